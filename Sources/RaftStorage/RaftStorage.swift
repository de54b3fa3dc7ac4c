// RaftStorage: durable Raft log and hard state in SQLite (issue 5).
