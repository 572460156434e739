-- An update that changes the primary key: Debezium writes it as a delete of the old key, its
-- tombstone and a create of the new key; the others as one update.
INSERT INTO keyed VALUES (1, 'a');
UPDATE keyed SET id = 2 WHERE id = 1;
UPDATE keyed SET note = 'b' WHERE id = 2;
DELETE FROM keyed WHERE id = 2;
