/**
 * How the PostgreSQL backend stores an object's content: one `bytea` holding the store's own `Content` record
 * (riak_pb's `RpbContent` layout, same field numbers; see schema.ts), the bytes the snapshot file and the
 * write-ahead log use for it too, so a row holds what Riak clients see and new optional fields can be added
 * compatibly.
 */
export { decodeContent as decode, decodeSiblings, encodeContent as encode, encodeSiblings } from "./snapshot.js"
