INSERT INTO numbers (f, d, dec2, dec10) VALUES (1.5, 4.2341, 603.00, 0);
INSERT INTO numbers (f, d, dec2, dec10) VALUES (0.5, 1e10, -1.50, 0.00000001);
INSERT INTO numbers (f, d, dec2, dec10) VALUES (1.1, 5, 12345678.90, 1.5);
INSERT INTO numbers (f, d, dec2, dec10) VALUES (-0.001, 0.0001, 0, -123.4567891234);
