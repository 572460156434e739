INSERT INTO enums (e) VALUES ('bar');
INSERT INTO enums (e) VALUES ('baz');
INSERT INTO enums (e) VALUES ('foo');
SET SESSION sql_mode = '';
INSERT INTO enums (e) VALUES ('not a member');
