import { randomBytes } from "node:crypto"
import * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import type * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { MemoryLimitExceeded, PreconditionFailed, SnapshotError } from "../KvError.js"
import type * as KvStore from "../KvStore.js"
import * as snapshotFile from "./snapshot.js"

/** Bytes charged per object on top of its payload (map entries, record, arrays). */
export const objectOverhead = 128
const pairOverhead = 16

const OptionsSchema = Schema.Struct({
  maxBytes: Schema.optional(Schema.Int.pipe(Schema.positive())),
  dataFile: Schema.optional(Schema.NonEmptyTrimmedString),
  listBatchSize: Schema.optional(Schema.Int.pipe(Schema.positive())),
  listBatchBytes: Schema.optional(Schema.Int.pipe(Schema.positive()))
})

const defaults = {
  maxBytes: 256 * 1024 * 1024,
  listBatchSize: 1000,
  listBatchBytes: 64 * 1024
} as const

const objectsGauge = Metric.gauge("warren_kv_objects", { description: "Objects held by the KV store" })
const bytesGauge = Metric.gauge("warren_kv_bytes", { description: "Approximate bytes held by the KV store" })
const snapshotWrites = Metric.counter("warren_kv_snapshot_writes", {
  description: "Snapshot files written by the KV store",
  incremental: true
})

/** A stored object with its address; the shape the snapshot file writes. */
interface StoredRecord extends snapshotFile.SnapshotEntry {
  readonly content: KvStore.Content
  readonly size: number
}

interface BucketState {
  readonly name: Uint8Array
  readonly keys: Map<string, StoredRecord>
}

interface TypeState {
  readonly name: Uint8Array
  readonly buckets: Map<string, BucketState>
}

const defaultTypeBytes = new TextEncoder().encode("default")
const defaultTypeId = "default"

/** A byte string as a Map key: latin1 maps every byte to one char, so the mapping is one to one. */
const id = (bytes: Uint8Array): string =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1")

const typeId = (type: Uint8Array | undefined): string => (type === undefined ? defaultTypeId : id(type))

const equalBytes = (a: Uint8Array, b: Uint8Array): boolean =>
  a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b)

const base62Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

/** Base-62 text of a byte string (used for generated keys and vtags, like Riak's). */
const base62 = (bytes: Uint8Array): string => {
  let n = BigInt(`0x${Buffer.from(bytes).toString("hex") || "0"}`)
  let out = ""
  do {
    out = base62Alphabet[Number(n % 62n)] + out
    n /= 62n
  } while (n > 0n)
  return out
}

const copy = (bytes: Uint8Array): Uint8Array => new Uint8Array(bytes)

const copyPairs = (pairs: ReadonlyArray<KvStore.Pair>): ReadonlyArray<KvStore.Pair> =>
  pairs.map((p) => (p.value === undefined ? { key: copy(p.key) } : { key: copy(p.key), value: copy(p.value) }))

const copyLinks = (links: ReadonlyArray<KvStore.Link>): ReadonlyArray<KvStore.Link> =>
  links.map((l) => {
    const out: { bucket?: Uint8Array; key?: Uint8Array; tag?: Uint8Array } = {}
    if (l.bucket !== undefined) out.bucket = copy(l.bucket)
    if (l.key !== undefined) out.key = copy(l.key)
    if (l.tag !== undefined) out.tag = copy(l.tag)
    return out
  })

type Mutable<A> = { -readonly [K in keyof A]: A[K] }

/** Copies the client's content (detaching it from request buffers) and adds the write's own fields. */
const storedContent = (input: KvStore.ContentInput, vtag: Uint8Array, nowNanos: bigint): KvStore.Content => {
  const out: Mutable<KvStore.Content> = {
    value: copy(input.value),
    vtag,
    lastMod: Number(nowNanos / 1_000_000_000n),
    lastModUsecs: Number((nowNanos / 1000n) % 1_000_000n)
  }
  if (input.contentType !== undefined) out.contentType = copy(input.contentType)
  if (input.charset !== undefined) out.charset = copy(input.charset)
  if (input.contentEncoding !== undefined) out.contentEncoding = copy(input.contentEncoding)
  if (input.links !== undefined && input.links.length > 0) out.links = copyLinks(input.links)
  if (input.usermeta !== undefined && input.usermeta.length > 0) out.usermeta = copyPairs(input.usermeta)
  if (input.indexes !== undefined && input.indexes.length > 0) out.indexes = copyPairs(input.indexes)
  return out
}

const length = (bytes: Uint8Array | undefined): number => (bytes === undefined ? 0 : bytes.length)

const pairsSize = (pairs: ReadonlyArray<KvStore.Pair> | undefined): number =>
  pairs === undefined ? 0 : pairs.reduce((n, p) => n + pairOverhead + p.key.length + length(p.value), 0)

/** Approximate memory held by one object. */
export const recordSize = (
  address: { readonly type: Uint8Array; readonly bucket: Uint8Array; readonly key: Uint8Array },
  vclock: Uint8Array,
  content: KvStore.ContentInput & { readonly vtag?: Uint8Array }
): number =>
  objectOverhead + address.type.length + address.bucket.length + address.key.length + vclock.length +
  content.value.length + length(content.contentType) + length(content.charset) + length(content.contentEncoding) +
  length(content.vtag) + pairsSize(content.usermeta) + pairsSize(content.indexes) +
  (content.links === undefined
    ? 0
    : content.links.reduce((n, l) => n + pairOverhead + length(l.bucket) + length(l.key) + length(l.tag), 0))

/** Splits names into batches of at most `maxCount` names and (unless one name is longer) `maxBytes` bytes. */
function* batches(
  names: Iterator<Uint8Array>,
  maxCount: number,
  maxBytes: number
): IterableIterator<ReadonlyArray<Uint8Array>> {
  let batch: Array<Uint8Array> = []
  let bytes = 0
  for (let next = names.next(); !next.done; next = names.next()) {
    const name = next.value
    if (batch.length > 0 && (batch.length >= maxCount || bytes + name.length > maxBytes)) {
      yield batch
      batch = []
      bytes = 0
    }
    batch.push(name)
    bytes += name.length
  }
  if (batch.length > 0) yield batch
}

function* mapIterator<A, B>(it: Iterator<A>, f: (a: A) => B): Iterator<B> {
  for (let next = it.next(); !next.done; next = it.next()) yield f(next.value)
}

const durationOption = (input: unknown): Effect.Effect<Option.Option<Duration.Duration>, ParseResult.ParseError> =>
  input === undefined
    ? Effect.succeed(Option.none())
    : Schema.decodeUnknown(
      Schema.declare((u): u is Duration.DurationInput => Option.isSome(Duration.decodeUnknown(u)), {
        identifier: "DurationInput"
      })
    )(input).pipe(
      Effect.map((d) => Option.some(Duration.decode(d)))
    )

/** Builds the in-memory store (see `KvStore.make`). */
export const make = (
  options: KvStore.Options = {}
): Effect.Effect<
  Context.Tag.Service<typeof KvStore.KvStore>,
  SnapshotError | MemoryLimitExceeded | ParseResult.ParseError,
  Scope.Scope
> =>
  Effect.gen(function*() {
    const { snapshotInterval, ...rest } = options
    const checked = yield* Schema.decodeUnknown(OptionsSchema)(rest)
    const interval = yield* durationOption(snapshotInterval)
    const maxBytes = checked.maxBytes ?? defaults.maxBytes
    const listBatchSize = checked.listBatchSize ?? defaults.listBatchSize
    const listBatchBytes = checked.listBatchBytes ?? defaults.listBatchBytes
    const dataFile = checked.dataFile

    const types = new Map<string, TypeState>()
    let objects = 0
    let bytes = 0
    let sequence = 0
    let serverId: Uint8Array = randomBytes(8)
    /** Bumped on every change; the snapshot records which version it wrote. */
    let version = 0
    let savedVersion = 0

    const lookup = (type: Uint8Array | undefined, bucket: Uint8Array): BucketState | undefined =>
      types.get(typeId(type))?.buckets.get(id(bucket))

    /** Inserts or replaces a record; the caller has checked the memory bound. */
    const insert = (record: StoredRecord): void => {
      const tId = id(record.type)
      let typeState = types.get(tId)
      if (typeState === undefined) {
        typeState = { name: record.type, buckets: new Map() }
        types.set(tId, typeState)
      }
      const bId = id(record.bucket)
      let bucketState = typeState.buckets.get(bId)
      if (bucketState === undefined) {
        bucketState = { name: record.bucket, keys: new Map() }
        typeState.buckets.set(bId, bucketState)
      }
      const kId = id(record.key)
      const previous = bucketState.keys.get(kId)
      bucketState.keys.set(kId, record)
      objects += previous === undefined ? 1 : 0
      bytes += record.size - (previous?.size ?? 0)
      version++
    }

    const remove = (location: KvStore.Location): boolean => {
      const tId = typeId(location.type)
      const typeState = types.get(tId)
      const bId = id(location.bucket)
      const bucketState = typeState?.buckets.get(bId)
      const kId = id(location.key)
      const previous = bucketState?.keys.get(kId)
      if (typeState === undefined || bucketState === undefined || previous === undefined) return false
      bucketState.keys.delete(kId)
      if (bucketState.keys.size === 0) typeState.buckets.delete(bId)
      if (typeState.buckets.size === 0) types.delete(tId)
      objects--
      bytes -= previous.size
      version++
      return true
    }

    const updateGauges = Effect.suspend(() =>
      Effect.zipRight(Metric.set(objectsGauge, objects), Metric.set(bytesGauge, bytes))
    )

    // ---- load ----------------------------------------------------------------------------------
    if (dataFile !== undefined) {
      const loaded = yield* Effect.tryPromise({
        try: async () => {
          const leftovers = await snapshotFile.removeLeftovers(dataFile)
          return { leftovers, snapshot: await snapshotFile.read(dataFile) }
        },
        catch: (cause) =>
          new SnapshotError({
            reason: cause instanceof snapshotFile.SnapshotFormatError ? "Corrupt" : "Read",
            path: dataFile,
            cause
          })
      })
      if (loaded.leftovers.length > 0) {
        yield* Effect.logWarning(`KV store: removed unfinished snapshot files ${loaded.leftovers.join(", ")}`)
      }
      if (loaded.snapshot !== undefined) {
        const { entries, header } = loaded.snapshot
        let total = 0
        for (const entry of entries) total += recordSize(entry, entry.vclock, entry.content)
        if (total > maxBytes) {
          return yield* new MemoryLimitExceeded({ limitBytes: maxBytes, usedBytes: 0, requiredBytes: total })
        }
        for (const entry of entries) {
          const content: KvStore.Content = {
            ...entry.content,
            vtag: entry.content.vtag ?? new Uint8Array(0),
            lastMod: entry.content.lastMod ?? 0,
            lastModUsecs: entry.content.lastModUsecs ?? 0
          }
          insert({ ...entry, content, size: recordSize(entry, entry.vclock, content) })
        }
        serverId = header.serverId
        sequence = header.sequence
        savedVersion = version
        yield* Effect.logInfo(`KV store: loaded ${objects} objects from ${dataFile}`)
      }
    }
    yield* updateGauges

    // ---- operations ----------------------------------------------------------------------------
    const get = (location: KvStore.Location): Effect.Effect<Option.Option<KvStore.KvObject>> =>
      Effect.sync(() => {
        const record = lookup(location.type, location.bucket)?.keys.get(id(location.key))
        return record === undefined
          ? Option.none()
          : Option.some({ content: record.content, vclock: record.vclock })
      })

    const freshKey = (bucket: BucketState | undefined): Uint8Array => {
      for (;;) {
        const key = new TextEncoder().encode(base62(randomBytes(16)))
        if (bucket === undefined || !bucket.keys.has(id(key))) return key
      }
    }

    const put = (
      ref: KvStore.BucketRef,
      key: Uint8Array | undefined,
      input: KvStore.ContentInput,
      condition: KvStore.PutCondition = { _tag: "Always" }
    ): Effect.Effect<KvStore.PutResult, PreconditionFailed | MemoryLimitExceeded> =>
      Effect.flatMap(Clock.currentTimeNanos, (now) =>
        Effect.suspend((): Effect.Effect<KvStore.PutResult, PreconditionFailed | MemoryLimitExceeded> => {
          const bucketState = lookup(ref.type, ref.bucket)
          const finalKey = key === undefined ? freshKey(bucketState) : copy(key)
          const existing = key === undefined ? undefined : bucketState?.keys.get(id(key))
          switch (condition._tag) {
            case "IfNoneMatch":
              if (existing !== undefined) return Effect.fail(new PreconditionFailed({ reason: "MatchFound" }))
              break
            case "IfNotModified":
              if (existing === undefined) return Effect.fail(new PreconditionFailed({ reason: "NotFound" }))
              if (condition.vclock === undefined || !equalBytes(condition.vclock, existing.vclock)) {
                return Effect.fail(new PreconditionFailed({ reason: "Modified" }))
              }
              break
          }
          const nextSequence = sequence + 1
          const stamp = Buffer.alloc(16)
          stamp.set(serverId.subarray(0, 8), 0)
          stamp.writeBigUInt64BE(BigInt(nextSequence), 8)
          // vclock: 'w', format 1, server id, store-wide write sequence. Opaque to clients.
          const vclock = new Uint8Array(18)
          vclock[0] = 0x77
          vclock[1] = 1
          vclock.set(stamp, 2)
          const vtag = new TextEncoder().encode(base62(stamp))
          const content = storedContent(input, vtag, now)
          const address = {
            type: ref.type === undefined ? defaultTypeBytes : copy(ref.type),
            bucket: copy(ref.bucket),
            key: finalKey
          }
          const size = recordSize(address, vclock, content)
          const required = bytes - (existing?.size ?? 0) + size
          if (required > maxBytes) {
            return Effect.fail(
              new MemoryLimitExceeded({ limitBytes: maxBytes, usedBytes: bytes, requiredBytes: required })
            )
          }
          sequence = nextSequence
          insert({ ...address, vclock, content, size })
          const result = { key: finalKey, generatedKey: key === undefined, object: { content, vclock } }
          return Effect.as(updateGauges, result)
        })
      )

    const del = (location: KvStore.Location): Effect.Effect<boolean> =>
      Effect.suspend(() => {
        const removed = remove(location)
        return removed ? Effect.as(updateGauges, true) : Effect.succeed(false)
      })

    const listKeys = (ref: KvStore.BucketRef): Stream.Stream<ReadonlyArray<Uint8Array>> =>
      Stream.suspend(() => {
        const bucketState = lookup(ref.type, ref.bucket)
        if (bucketState === undefined) return Stream.empty
        const keys = mapIterator(bucketState.keys.values(), (r) => r.key)
        return Stream.fromIteratorSucceed(batches(keys, listBatchSize, listBatchBytes), 1)
      })

    const listBuckets = (type: Uint8Array | undefined): Stream.Stream<ReadonlyArray<Uint8Array>> =>
      Stream.suspend(() => {
        const typeState = types.get(typeId(type))
        if (typeState === undefined) return Stream.empty
        const names = mapIterator(typeState.buckets.values(), (b) => b.name)
        return Stream.fromIteratorSucceed(batches(names, listBatchSize, listBatchBytes), 1)
      })

    const usage = Effect.sync((): KvStore.Usage => ({ objects, bytes, limitBytes: maxBytes }))

    // ---- snapshot ------------------------------------------------------------------------------
    const saving = yield* Effect.makeSemaphore(1)
    const snapshot: Effect.Effect<void, SnapshotError> = dataFile === undefined
      ? Effect.void
      : saving.withPermits(1)(
        Effect.suspend(() => {
          if (version === savedVersion) return Effect.void
          // Records are immutable and replaced on write, so collecting the references is a
          // consistent point-in-time view even though the file is written asynchronously.
          const entries: Array<StoredRecord> = []
          for (const typeState of types.values()) {
            for (const bucketState of typeState.buckets.values()) {
              for (const record of bucketState.keys.values()) entries.push(record)
            }
          }
          const writtenVersion = version
          const header = { serverId, sequence }
          return Effect.tryPromise({
            try: () => snapshotFile.write(dataFile, header, entries),
            catch: (cause) => new SnapshotError({ reason: "Write", path: dataFile, cause })
          }).pipe(
            Effect.tap(() => {
              savedVersion = writtenVersion
              return Metric.increment(snapshotWrites)
            }),
            Effect.withSpan("KvStore.snapshot", { attributes: { objects: entries.length } })
          )
        })
      ).pipe(Effect.uninterruptible)

    const saveOrLog = snapshot.pipe(
      Effect.catchAll((e) => Effect.logError(`KV store: ${e.message}`))
    )
    yield* Effect.addFinalizer(() => saveOrLog)
    if (dataFile !== undefined && Option.isSome(interval)) {
      yield* Effect.forkScoped(Effect.forever(Effect.zipRight(Effect.sleep(interval.value), saveOrLog)))
    }

    return {
      get,
      put,
      delete: del,
      listBuckets,
      listKeys,
      usage,
      snapshot
    }
  })
