CREATE TABLE select_copy SELECT * FROM select_source;
CREATE TABLE select_like LIKE select_source;
INSERT INTO select_like VALUES (3, 2.25);
