INSERT INTO column_case (id, BAR_field) VALUES (1, 'x');
