-- The monolith: a small shop schema, and the user cleave reads it with: the least-privilege
-- grants of README (Grants, MySQL), LOCK TABLES for the backfill's snapshots included. The
-- load service writes as the same user, for brevity, hence INSERT, UPDATE and DELETE.
-- caching_sha2_password, MySQL's default: cleave's connections speak it.
CREATE USER 'cleave'@'%' IDENTIFIED BY 'cleave';
GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'cleave'@'%';
GRANT SELECT, LOCK TABLES, INSERT, UPDATE, DELETE ON shop.* TO 'cleave'@'%';

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
