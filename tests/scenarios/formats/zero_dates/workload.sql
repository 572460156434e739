SET SESSION sql_mode = 'ALLOW_INVALID_DATES';
INSERT INTO zero_dates (t, small_t, dt, small_dt, ts, raw_dt, dcol) VALUES (0, 0, 0, 0, 0, 0, 0);
INSERT INTO zero_dates (raw_dt) VALUES ('0003-00-00 00:00:01');
INSERT INTO zero_dates (raw_dt, dcol) VALUES ('1970-01-01 00:00:00', '2020-02-31');
