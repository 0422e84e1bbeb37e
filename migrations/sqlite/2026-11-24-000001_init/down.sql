DROP TABLE changes;
DROP TABLE messages;
DROP TABLE members;
DROP TABLE conversations;
DROP TABLE sessions;
DROP TABLE users;
