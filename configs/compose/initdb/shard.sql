-- A shard: cleave prepare creates the tables and its bookkeeping, so cleave needs all
-- privileges here.
CREATE USER 'cleave'@'%' IDENTIFIED BY 'cleave';
GRANT ALL PRIVILEGES ON *.* TO 'cleave'@'%';
