import protobuf from "protobufjs"
import type * as KvStore from "../KvStore.js"

/**
 * How the PostgreSQL backend stores an object's content: one `bytea`, riak_pb's `RpbContent` layout (same
 * field numbers), so a row holds what Riak clients see and new optional fields can be added compatibly.
 * Embedded as a string so the compiled `dist/` needs no `.proto` file next to it.
 */
const contentProto = `
syntax = "proto2";
package warren.kv.pg;

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
`

const ContentType: protobuf.Type = protobuf.parse(contentProto).root.lookupType("warren.kv.pg.Content")

type Mutable<A> = { -readonly [K in keyof A]: A[K] }

/** The protobufjs view of a decoded `Content` (camel-cased; repeated fields default to empty arrays). */
interface Decoded {
  readonly value: Uint8Array
  readonly contentType?: Uint8Array
  readonly charset?: Uint8Array
  readonly contentEncoding?: Uint8Array
  readonly vtag?: Uint8Array
  readonly links: ReadonlyArray<KvStore.Link>
  readonly lastMod?: number
  readonly lastModUsecs?: number
  readonly usermeta: ReadonlyArray<KvStore.Pair>
  readonly indexes: ReadonlyArray<KvStore.Pair>
}

/** Content to its stored bytes. */
export const encode = (content: KvStore.Content): Uint8Array => ContentType.encode(content).finish()

const has = (o: object, field: string): boolean => Object.prototype.hasOwnProperty.call(o, field)

/** Stored bytes to content; absent optional fields stay absent (as the embedded store returns them). */
export const decode = (bytes: Uint8Array): KvStore.Content => {
  const d = ContentType.toObject(ContentType.decode(bytes), { arrays: true }) as Decoded
  const out: Mutable<KvStore.Content> = {
    value: d.value,
    vtag: d.vtag ?? new Uint8Array(0),
    lastMod: d.lastMod ?? 0,
    lastModUsecs: d.lastModUsecs ?? 0
  }
  if (has(d, "contentType")) out.contentType = d.contentType!
  if (has(d, "charset")) out.charset = d.charset!
  if (has(d, "contentEncoding")) out.contentEncoding = d.contentEncoding!
  if (d.links.length > 0) out.links = d.links.map(link)
  if (d.usermeta.length > 0) out.usermeta = d.usermeta.map(pair)
  if (d.indexes.length > 0) out.indexes = d.indexes.map(pair)
  return out
}

const link = (l: KvStore.Link): KvStore.Link => {
  const out: Mutable<KvStore.Link> = {}
  if (l.bucket !== undefined) out.bucket = l.bucket
  if (l.key !== undefined) out.key = l.key
  if (l.tag !== undefined) out.tag = l.tag
  return out
}

const pair = (p: KvStore.Pair): KvStore.Pair => (p.value === undefined ? { key: p.key } : { key: p.key, value: p.value })
