/**
 * The proto2 schema of this package's snapshot file and write-ahead log records. Object content uses riak_pb's `RpbContent` layout (same
 * field numbers), so a stored object is written the way Riak clients see it.
 *
 * Embedded as a string so the compiled `dist/` needs no `.proto` file next to it.
 */
export const snapshotProto = `
syntax = "proto2";
package warren.kv.snapshot;

message Pair { required bytes key = 1; optional bytes value = 2; }

message Link { optional bytes bucket = 1; optional bytes key = 2; optional bytes tag = 3; }

message Content {
  required bytes value = 1;
  optional bytes content_type = 2;
  optional bytes charset = 3;
  optional bytes content_encoding = 4;
  optional bytes vtag = 5;
  repeated Link links = 6;
  optional uint32 last_mod = 7;
  optional uint32 last_mod_usecs = 8;
  repeated Pair usermeta = 9;
  repeated Pair indexes = 10;
}

message Header {
  required bytes server_id = 1;
  required double sequence = 2;
  required uint32 objects = 3;
  // The first write-ahead log segment the snapshot does not contain (absent: 0, replay every segment).
  optional double wal_segment = 4;
}

message Entry {
  required bytes type = 1;
  required bytes bucket = 2;
  required bytes key = 3;
  required bytes vclock = 4;
  required Content content = 5;
}

message Address { required bytes type = 1; required bytes bucket = 2; required bytes key = 3; }

// One write-ahead log record: exactly one of the fields.
message LogRecord {
  optional Entry put = 1;
  optional Address remove = 2;
}
`
