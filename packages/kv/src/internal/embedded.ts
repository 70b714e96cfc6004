/**
 * The embedded backend: the in-memory table, a snapshot file and (with a data file) a write-ahead log.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import type * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as KvBackend from "../KvBackend.js"
import { MemoryLimitExceeded, SnapshotError, type StorageError } from "../KvError.js"
import type * as KvStore from "../KvStore.js"
import { equalBytes, recordSize, type Row, Table } from "./memory.js"
import * as snapshotFile from "./snapshot.js"

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

/** Builds the embedded backend (see `EmbeddedBackend.make`). */
export const make = (
  options: KvStore.Options = {}
): Effect.Effect<KvBackend.Backend, SnapshotError | MemoryLimitExceeded | ParseResult.ParseError, Scope.Scope> =>
  Effect.gen(function*() {
    const { snapshotInterval, ...rest } = options
    const checked = yield* Schema.decodeUnknown(OptionsSchema)(rest)
    const interval = yield* durationOption(snapshotInterval)
    const maxBytes = checked.maxBytes ?? defaults.maxBytes
    const listBatchSize = checked.listBatchSize ?? defaults.listBatchSize
    const listBatchBytes = checked.listBatchBytes ?? defaults.listBatchBytes
    const dataFile = checked.dataFile

    const table = new Table()
    let serverId: Uint8Array = new Uint8Array(8)
    let sequence = 0
    let savedVersion = 0

    const updateGauges = Effect.suspend(() =>
      Effect.zipRight(Metric.set(objectsGauge, table.objects), Metric.set(bytesGauge, table.bytes))
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
          table.set({ ...entry, content, size: recordSize(entry, entry.vclock, content) })
        }
        serverId = header.serverId
        sequence = header.sequence
        savedVersion = table.version
        yield* Effect.logInfo(`KV store: loaded ${table.objects} objects from ${dataFile}`)
      }
    }
    yield* updateGauges

    // ---- operations ----------------------------------------------------------------------------
    const get = (address: KvBackend.Address): Effect.Effect<Option.Option<KvBackend.StoredObject>, StorageError> =>
      Effect.sync(() => {
        const row = table.get(address)
        return row === undefined ? Option.none() : Option.some({ vclock: row.vclock, content: row.content })
      })

    const compareAndSet = (
      address: KvBackend.Address,
      expected: Option.Option<Uint8Array>,
      next: Option.Option<KvBackend.StoredObject>
    ): Effect.Effect<boolean, MemoryLimitExceeded | StorageError> =>
      Effect.suspend(() => {
        const current = table.get(address)
        const matches = Option.isNone(expected)
          ? current === undefined
          : current !== undefined && equalBytes(current.vclock, expected.value)
        if (!matches) return Effect.succeed(false)
        if (Option.isNone(next)) {
          table.remove(address)
          return Effect.as(updateGauges, true)
        }
        const row: Row = { ...address, ...next.value, size: recordSize(address, next.value.vclock, next.value.content) }
        const required = table.bytes - (current?.size ?? 0) + row.size
        if (required > maxBytes) {
          return Effect.fail(
            new MemoryLimitExceeded({ limitBytes: maxBytes, usedBytes: table.bytes, requiredBytes: required })
          )
        }
        sequence++
        table.set(row)
        return Effect.as(updateGauges, true)
      })

    const del = (address: KvBackend.Address): Effect.Effect<boolean, StorageError> =>
      Effect.suspend(() => (table.remove(address) ? Effect.as(updateGauges, true) : Effect.succeed(false)))

    const listKeys = (type: Uint8Array, bucket: Uint8Array): Stream.Stream<ReadonlyArray<Uint8Array>, StorageError> =>
      Stream.suspend(() => {
        const it = table.keyBatches(type, bucket, listBatchSize, listBatchBytes)
        return it === undefined ? Stream.empty : Stream.fromIteratorSucceed(it, 1)
      })

    const listBuckets = (type: Uint8Array): Stream.Stream<ReadonlyArray<Uint8Array>, StorageError> =>
      Stream.suspend(() => {
        const it = table.bucketBatches(type, listBatchSize, listBatchBytes)
        return it === undefined ? Stream.empty : Stream.fromIteratorSucceed(it, 1)
      })

    const usage = Effect.sync((): KvStore.Usage => ({ objects: table.objects, bytes: table.bytes, limitBytes: maxBytes }))

    // ---- snapshot ------------------------------------------------------------------------------
    const saving = yield* Effect.makeSemaphore(1)
    const checkpoint: Effect.Effect<void, SnapshotError> = dataFile === undefined
      ? Effect.void
      : saving.withPermits(1)(
        Effect.suspend(() => {
          if (table.version === savedVersion) return Effect.void
          // Rows are immutable and replaced on write, so collecting the references is a consistent
          // point-in-time view even though the file is written asynchronously.
          const entries = table.rows()
          const writtenVersion = table.version
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

    const saveOrLog = checkpoint.pipe(
      Effect.catchAll((e) => Effect.logError(`KV store: ${e.message}`))
    )
    yield* Effect.addFinalizer(() => saveOrLog)
    if (dataFile !== undefined && Option.isSome(interval)) {
      yield* Effect.forkScoped(Effect.forever(Effect.zipRight(Effect.sleep(interval.value), saveOrLog)))
    }

    return {
      name: "embedded",
      get,
      compareAndSet,
      delete: del,
      listBuckets,
      listKeys,
      usage,
      checkpoint
    }
  })
