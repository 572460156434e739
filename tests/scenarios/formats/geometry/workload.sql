INSERT INTO geometry_values (g) VALUES (POINT(3, 2));
INSERT INTO geometry_values (g) VALUES (GEOMETRYCOLLECTION(POINT(1, 1), LINESTRING(POINT(0, 1), POINT(1, 2), POINT(2, 3), POINT(3, 4))));
INSERT INTO geometry_values (g) VALUES (ST_GeomFromText('POLYGON((0 0, 1.5 0, 1.5 1.5, 0 0))'));
