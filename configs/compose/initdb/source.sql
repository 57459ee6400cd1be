-- The monolith: a small shop schema, and the user cleave reads it with (a replica's grants
-- plus SELECT). The load service writes as the same user, for brevity.
CREATE USER 'cleave'@'%' IDENTIFIED WITH mysql_native_password BY 'cleave';
GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO 'cleave'@'%';
GRANT INSERT, UPDATE, DELETE ON shop.* TO 'cleave'@'%';

CREATE DATABASE shop;
CREATE TABLE shop.users (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(100) NOT NULL,
  country CHAR(2) NOT NULL,
  created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
);
CREATE TABLE shop.orders (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  user_id BIGINT NOT NULL,
  amount DECIMAL(12,2) NOT NULL,
  created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  KEY (user_id)
);
CREATE TABLE shop.countries (
  code CHAR(2) NOT NULL PRIMARY KEY,
  name VARCHAR(100) NOT NULL
);
INSERT INTO shop.countries VALUES ('DE', 'Germany'), ('FR', 'France'), ('NL', 'Netherlands');
