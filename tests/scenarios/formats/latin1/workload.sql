INSERT INTO latin1_text (t, c) VALUES ('áááááááá', '€ab');
