INSERT INTO binary_values (bl, bn, vb) VALUES (x'00010203', x'00010203', x'00010203');
INSERT INTO binary_values (bl, bn, vb) VALUES (x'', x'', x'');
