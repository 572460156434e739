CREATE TABLE enums (id INT AUTO_INCREMENT PRIMARY KEY, e ENUM('foo','bar','baz'));
