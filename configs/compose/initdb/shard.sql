-- A shard: cleave prepare creates the tables and its bookkeeping, so cleave needs all
-- privileges here.
CREATE USER 'cleave'@'%' IDENTIFIED WITH mysql_native_password BY 'cleave';
GRANT ALL PRIVILEGES ON *.* TO 'cleave'@'%';
