INSERT INTO sets (s) VALUES ('bar,baz');
INSERT INTO sets (s) VALUES ('baz,foo');
INSERT INTO sets (s) VALUES ('foo');
INSERT INTO sets (s) VALUES ('');
ALTER TABLE sets MODIFY s SET('foo','bar','baz') NULL DEFAULT NULL;
INSERT INTO sets (id) VALUES (NULL);
