/**
 * The proto2 schema of Riak KV's object and listing messages (riak_pb `riak.proto` / `riak_kv.proto`,
 * same field numbers), plus the records of this package's snapshot file.
 *
 * Embedded as a string so the compiled `dist/` needs no `.proto` file next to it.
 */
export const kvProto = `
syntax = "proto2";
package warren.kv;

message RpbErrorResp { required bytes errmsg = 1; required uint32 errcode = 2; }

message RpbPair { required bytes key = 1; optional bytes value = 2; }

message RpbLink { optional bytes bucket = 1; optional bytes key = 2; optional bytes tag = 3; }

message RpbContent {
  required bytes value = 1;
  optional bytes content_type = 2;
  optional bytes charset = 3;
  optional bytes content_encoding = 4;
  optional bytes vtag = 5;
  repeated RpbLink links = 6;
  optional uint32 last_mod = 7;
  optional uint32 last_mod_usecs = 8;
  repeated RpbPair usermeta = 9;
  repeated RpbPair indexes = 10;
  optional bool deleted = 11;
}

message RpbGetReq {
  required bytes bucket = 1;
  required bytes key = 2;
  optional uint32 r = 3;
  optional uint32 pr = 4;
  optional bool basic_quorum = 5;
  optional bool notfound_ok = 6;
  optional bytes if_modified = 7;
  optional bool head = 8;
  optional bool deletedvclock = 9;
  optional uint32 timeout = 10;
  optional bool sloppy_quorum = 11;
  optional uint32 n_val = 12;
  optional bytes type = 13;
}

message RpbGetResp {
  repeated RpbContent content = 1;
  optional bytes vclock = 2;
  optional bool unchanged = 3;
}

message RpbPutReq {
  required bytes bucket = 1;
  optional bytes key = 2;
  optional bytes vclock = 3;
  required RpbContent content = 4;
  optional uint32 w = 5;
  optional uint32 dw = 6;
  optional bool return_body = 7;
  optional uint32 pw = 8;
  optional bool if_not_modified = 9;
  optional bool if_none_match = 10;
  optional bool return_head = 11;
  optional uint32 timeout = 12;
  optional bool asis = 13;
  optional bool sloppy_quorum = 14;
  optional uint32 n_val = 15;
  optional bytes type = 16;
}

message RpbPutResp {
  repeated RpbContent content = 1;
  optional bytes vclock = 2;
  optional bytes key = 3;
}

message RpbDelReq {
  required bytes bucket = 1;
  required bytes key = 2;
  optional uint32 rw = 3;
  optional bytes vclock = 4;
  optional uint32 r = 5;
  optional uint32 w = 6;
  optional uint32 pr = 7;
  optional uint32 pw = 8;
  optional uint32 dw = 9;
  optional uint32 timeout = 10;
  optional bool sloppy_quorum = 11;
  optional uint32 n_val = 12;
  optional bytes type = 13;
}

message RpbListBucketsReq { optional uint32 timeout = 1; optional bool stream = 2; optional bytes type = 3; }
message RpbListBucketsResp { repeated bytes buckets = 1; optional bool done = 2; }

message RpbListKeysReq { required bytes bucket = 1; optional uint32 timeout = 2; optional bytes type = 3; }
message RpbListKeysResp { repeated bytes keys = 1; optional bool done = 2; }

// Snapshot file records (not on the PB wire).
message SnapshotHeader { required bytes server_id = 1; required double sequence = 2; required uint32 objects = 3; }
message SnapshotEntry {
  required bytes type = 1;
  required bytes bucket = 2;
  required bytes key = 3;
  required bytes vclock = 4;
  required RpbContent content = 5;
}
`
