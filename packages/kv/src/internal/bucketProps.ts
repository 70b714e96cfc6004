/**
 * Bucket properties between their three forms: riak_pb's `RpbBucketProps` (the wire), `BucketProps.Overrides`
 * (the model) and the stored record (schema.ts's `BucketProps`, riak_pb's field numbers, quorums in riak_pb's
 * encoding), plus the checks a set must pass.
 */
import type { RiakPb } from "@warren/pb"
import * as Either from "effect/Either"
import type * as BucketProps from "../BucketProps.js"
import { InvalidBucketProps } from "../KvError.js"
import { snapshotTypes } from "./snapshot.js"

type Mutable<A> = { -readonly [K in keyof A]: A[K] }

/** riak_pb's uint32 encodings of the symbolic quorums (`riak_pb_kv_codec`). */
const symbolic = { one: 4294967294, quorum: 4294967293, all: 4294967292, default: 4294967291 } as const

const encodeQuorum = (q: BucketProps.Quorum): number => (typeof q === "number" ? q : symbolic[q])

const decodeQuorum = (n: number): BucketProps.Quorum => {
  for (const [name, value] of Object.entries(symbolic)) if (value === n) return name as BucketProps.Quorum
  return n
}

const quorums = ["pr", "r", "w", "pw", "dw", "rw"] as const
const counts = [
  ["nVal", "n_val"],
  ["oldVclock", "old_vclock"],
  ["youngVclock", "young_vclock"],
  ["bigVclock", "big_vclock"],
  ["smallVclock", "small_vclock"]
] as const
const flags = [
  ["allowMult", "allow_mult"],
  ["lastWriteWins", "last_write_wins"],
  ["basicQuorum", "basic_quorum"],
  ["notfoundOk", "notfound_ok"]
] as const

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s)
/** The functions Riak 2 reports for every bucket (warren has no consistent hashing or link walking). */
const chashKeyfun = { module: utf8("riak_core_util"), function: utf8("chash_std_keyfun") }
const linkfun = { module: utf8("riak_kv_wm_link_walker"), function: utf8("mapreduce_linkfun") }

/** A bucket's effective properties on the wire. */
export const toPb = (props: BucketProps.BucketProps): RiakPb.RpbBucketProps => {
  const out: Mutable<RiakPb.RpbBucketProps> = {
    precommit: [],
    has_precommit: false,
    postcommit: [],
    has_postcommit: false,
    chash_keyfun: chashKeyfun,
    linkfun,
    consistent: false,
    write_once: false
  }
  for (const [model, wire] of counts) out[wire] = props[model]
  for (const [model, wire] of flags) out[wire] = props[model]
  for (const q of quorums) out[q] = encodeQuorum(props[q])
  return out
}

const unsupported = (property: string) =>
  Either.left(new InvalidBucketProps({ property, detail: "not supported by warren" }))

/**
 * The properties a client sets, checked: properties warren does not implement are refused when they ask for
 * something (commit hooks, a backend, search, data types, strong consistency, write-once); `chash_keyfun`,
 * `linkfun`, `repl` and `hll_precision` are accepted and ignored.
 */
export const fromPb = (props: RiakPb.RpbBucketProps): Either.Either<BucketProps.Overrides, InvalidBucketProps> => {
  if ((props.precommit?.length ?? 0) > 0 || props.has_precommit === true) return unsupported("precommit")
  if ((props.postcommit?.length ?? 0) > 0 || props.has_postcommit === true) return unsupported("postcommit")
  if (props.backend !== undefined) return unsupported("backend")
  if (props.search === true) return unsupported("search")
  if (props.search_index !== undefined) return unsupported("search_index")
  if (props.datatype !== undefined) return unsupported("datatype")
  if (props.consistent === true) return unsupported("consistent")
  if (props.write_once === true) return unsupported("write_once")
  return Either.right(fromRecord(props))
}

/** Overrides from a record with riak_pb's field names (the wire or the stored record, decoded). */
const fromRecord = (fields: object): BucketProps.Overrides => {
  const record = fields as { readonly [K: string]: unknown }
  const out: Mutable<BucketProps.Overrides> = {}
  for (const [model, wire] of counts) {
    const v = record[wire]
    if (typeof v === "number") out[model] = v
  }
  for (const [model, wire] of flags) {
    const v = record[wire]
    if (typeof v === "boolean") out[model] = v
  }
  for (const q of quorums) {
    const v = record[q]
    if (typeof v === "number") out[q] = decodeQuorum(v)
  }
  return out
}

/** Refuses effective properties Riak would refuse too. */
export const validate = (props: BucketProps.BucketProps): Either.Either<void, InvalidBucketProps> => {
  if (!Number.isInteger(props.nVal) || props.nVal < 1) {
    return Either.left(new InvalidBucketProps({ property: "n_val", detail: "must be a positive integer" }))
  }
  if (props.allowMult && props.lastWriteWins) {
    return Either.left(
      new InvalidBucketProps({ property: "last_write_wins", detail: "cannot be true while allow_mult is true" })
    )
  }
  return Either.void
}

/** The stored record of overrides (protobufjs field names are camel-cased). */
export const encode = (overrides: BucketProps.Overrides): Uint8Array => {
  const record: Record<string, unknown> = {}
  for (const [model] of counts) if (overrides[model] !== undefined) record[model] = overrides[model]
  for (const [model] of flags) if (overrides[model] !== undefined) record[model] = overrides[model]
  for (const q of quorums) {
    const v = overrides[q]
    if (v !== undefined) record[q] = encodeQuorum(v)
  }
  return snapshotTypes.bucketProps.encode(record).finish()
}

/** A stored record back to overrides. */
export const decode = (bytes: Uint8Array): BucketProps.Overrides => {
  const raw = snapshotTypes.bucketProps.toObject(snapshotTypes.bucketProps.decode(bytes), {
    defaults: false,
    longs: Number
  })
  return fromRecord(toWireNames(raw))
}

/** protobufjs's camel-cased names of a decoded record back to riak_pb's. */
export const toWireNames = (raw: { readonly [K: string]: unknown }): { readonly [K: string]: unknown } => {
  const out: Record<string, unknown> = {}
  for (const [model, wire] of [...counts, ...flags]) if (raw[model] !== undefined) out[wire] = raw[model]
  for (const q of quorums) if (raw[q] !== undefined) out[q] = raw[q]
  return out
}
