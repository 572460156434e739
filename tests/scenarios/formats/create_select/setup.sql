CREATE TABLE select_source (id INT PRIMARY KEY, f FLOAT);
INSERT INTO select_source VALUES (1, 1.5), (2, 0.5);
