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
  // BucketPropsEntry records after the objects (absent: 0, snapshots written before bucket properties).
  optional uint32 bucket_props = 5;
}

message Entry {
  required bytes type = 1;
  required bytes bucket = 2;
  required bytes key = 3;
  required bytes vclock = 4;
  required Content content = 5;
  // The other siblings, when concurrent writes were kept (allow_mult); their dots are in the vclock.
  repeated Content siblings = 6;
}

// The other siblings of a PostgreSQL row (its content column holds the newest).
message Siblings { repeated Content content = 1; }

// The properties set on one bucket (riak_pb's RpbBucketProps field numbers; quorums in riak_pb's encoding).
message BucketProps {
  optional uint32 n_val = 1;
  optional bool allow_mult = 2;
  optional bool last_write_wins = 3;
  optional uint32 old_vclock = 10;
  optional uint32 young_vclock = 11;
  optional uint32 big_vclock = 12;
  optional uint32 small_vclock = 13;
  optional uint32 pr = 14;
  optional uint32 r = 15;
  optional uint32 w = 16;
  optional uint32 pw = 17;
  optional uint32 dw = 18;
  optional uint32 rw = 19;
  optional bool basic_quorum = 20;
  optional bool notfound_ok = 21;
}

// One bucket's properties: an encoded BucketProps, or absent when they were reset to the type's defaults.
message BucketPropsEntry {
  required bytes type = 1;
  required bytes bucket = 2;
  optional bytes props = 3;
}

message Address { required bytes type = 1; required bytes bucket = 2; required bytes key = 3; }

// One write-ahead log record: exactly one of the fields.
message LogRecord {
  optional Entry put = 1;
  optional Address remove = 2;
  optional BucketPropsEntry bucket_props = 3;
}
`
