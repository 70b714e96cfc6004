/**
 * The embedded backend: the in-memory table, a snapshot file and (with a data file) a write-ahead log.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import type * as ParseResult from "effect/ParseResult"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as fs from "node:fs/promises"
import type * as BucketProps from "../BucketProps.js"
import type * as KvBackend from "../KvBackend.js"
import { LogError, MemoryLimitExceeded, SnapshotError, type StorageError, StoreLocked } from "../KvError.js"
import type * as KvStore from "../KvStore.js"
import * as bucketPropsRecord from "./bucketProps.js"
import * as lock from "./lock.js"
import * as logWriter from "./logWriter.js"
import { equalBytes, id, recordSize, type Row, Table } from "./memory.js"
import * as snapshotFile from "./snapshot.js"
import * as wal from "./wal.js"

const OptionsSchema = Schema.Struct({
  maxBytes: Schema.optional(Schema.Int.pipe(Schema.positive())),
  dataFile: Schema.optional(Schema.NonEmptyTrimmedString),
  listBatchSize: Schema.optional(Schema.Int.pipe(Schema.positive())),
  listBatchBytes: Schema.optional(Schema.Int.pipe(Schema.positive())),
  sync: Schema.optional(Schema.Literal("always", "interval", "none")),
  logMaxBytes: Schema.optional(Schema.Int.pipe(Schema.positive()))
})

const defaults = {
  maxBytes: 256 * 1024 * 1024,
  listBatchSize: 1000,
  listBatchBytes: 64 * 1024,
  sync: "always",
  syncInterval: Duration.seconds(1),
  logMaxBytes: 64 * 1024 * 1024
} as const

/** The lock file of `dataFile`'s set of files. */
export const lockPath = (dataFile: string): string => `${dataFile}.lock`

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

/**
 * Builds the embedded backend (see `EmbeddedBackend.make`). A start that fails releases what it took
 * (the lock, the open segment) at once, not when the caller's scope closes.
 */
export const make = (
  options: KvStore.Options = {}
): Effect.Effect<KvBackend.Backend, KvStore.StartError, Scope.Scope> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const built = yield* Effect.exit(restore(Scope.extend(build(options), scope)))
      if (Exit.isFailure(built)) {
        yield* Scope.close(scope, built)
        return yield* built
      }
      yield* Effect.addFinalizer((exit) => Scope.close(scope, exit))
      return built.value
    })
  )

const build = (
  options: KvStore.Options
): Effect.Effect<KvBackend.Backend, KvStore.StartError, Scope.Scope> =>
  Effect.gen(function*() {
    const { snapshotInterval, syncInterval: syncIntervalInput, ...rest } = options
    const checked = yield* Schema.decodeUnknown(OptionsSchema)(rest)
    const interval = yield* durationOption(snapshotInterval)
    const syncInterval = Option.getOrElse(yield* durationOption(syncIntervalInput), () => defaults.syncInterval)
    const sync = checked.sync ?? defaults.sync
    const logMaxBytes = checked.logMaxBytes ?? defaults.logMaxBytes
    const maxBytes = checked.maxBytes ?? defaults.maxBytes
    const listBatchSize = checked.listBatchSize ?? defaults.listBatchSize
    const listBatchBytes = checked.listBatchBytes ?? defaults.listBatchBytes
    const dataFile = checked.dataFile

    const table = new Table()
    /**
     * Bucket properties set by clients, by bucket (few and small: not charged against `maxBytes`): the stored
     * record, and its decoded form for the puts that read it.
     */
    const bucketProps = new Map<string, { entry: snapshotFile.BucketPropsEntry; overrides: BucketProps.Overrides }>()
    const applyBucketProps = (type: Uint8Array, bucket: Uint8Array, props: Uint8Array | undefined): void => {
      if (props === undefined) bucketProps.delete(propsKey(type, bucket))
      else {
        bucketProps.set(propsKey(type, bucket), {
          entry: { type, bucket, props },
          overrides: bucketPropsRecord.decode(props)
        })
      }
      table.version++
    }
    let serverId: Uint8Array = new Uint8Array(8)
    let sequence = 0
    let savedVersion = 0
    /** The first log segment the snapshot on disk does not contain. */
    let walSegment = 0

    const updateGauges = Effect.suspend(() =>
      Effect.zipRight(Metric.set(objectsGauge, table.objects), Metric.set(bytesGauge, table.bytes))
    )

    // ---- lock ----------------------------------------------------------------------------------
    if (dataFile !== undefined) {
      const held = yield* Effect.acquireRelease(
        Effect.tryPromise({
          try: () => lock.acquire(lockPath(dataFile)),
          catch: (cause) =>
            cause instanceof lock.LockHeld
              ? new StoreLocked({ path: lockPath(dataFile), pid: cause.owner.pid, host: cause.owner.host })
              : new LogError({ reason: "Write", path: lockPath(dataFile), cause })
        }),
        (l) => Effect.promise(() => l.release().catch(() => undefined))
      )
      if (held.replaced !== undefined) {
        yield* Effect.logWarning(
          `KV store: took over the stale lock of process ${held.replaced.pid}, which no longer runs (${
            lockPath(dataFile)
          })`
        )
      }
    }

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
        for (const entry of entries) table.set(toRow(entry))
        for (const entry of loaded.snapshot.bucketProps) applyBucketProps(entry.type, entry.bucket, entry.props)
        serverId = header.serverId
        sequence = header.sequence
        walSegment = header.walSegment
        savedVersion = table.version
        yield* Effect.logInfo(`KV store: loaded ${table.objects} objects from ${dataFile}`)
      }
    }

    // ---- replay the log and open it ------------------------------------------------------------
    let writer: logWriter.LogWriter | undefined
    if (dataFile !== undefined) {
      const replayed = yield* replay(dataFile, walSegment, table, applyBucketProps)
      for (const message of replayed.warnings) yield* Effect.logWarning(`KV store: ${message}`)
      if (replayed.records > 0) {
        yield* Effect.logInfo(`KV store: replayed ${replayed.records} log records, ${table.objects} objects now`)
      }
      if (table.bytes > maxBytes) {
        return yield* new MemoryLimitExceeded({ limitBytes: maxBytes, usedBytes: 0, requiredBytes: table.bytes })
      }
      const generation = Math.max(replayed.lastGeneration + 1, walSegment, 1)
      const segment = yield* Effect.tryPromise({
        try: () => logWriter.createSegment(dataFile, generation),
        catch: (cause) => new LogError({ reason: "Write", path: wal.segmentPath(dataFile, generation), cause })
      })
      writer = yield* logWriter.start({ file: dataFile, segment, sync, syncInterval })
    }
    yield* updateGauges
    /** Wakes the snapshot loop early when the log has grown past `logMaxBytes`. */
    const compactNow = yield* Queue.sliding<void>(1)

    /** Logs `op` now (in the order of the in-memory changes) and waits until it is acknowledged. */
    const logged = (op: wal.LogOp): Effect.Effect<boolean, StorageError> => {
      if (writer === undefined) return Effect.as(updateGauges, true)
      const ack = writer.append(wal.encode(op))
      if (writer.segmentBytes() > logMaxBytes) Queue.unsafeOffer(compactNow, undefined)
      return Effect.zipRight(updateGauges, Effect.as(ack, true))
    }

    // ---- operations ----------------------------------------------------------------------------
    const get = (address: KvBackend.Address): Effect.Effect<Option.Option<KvBackend.StoredObject>, StorageError> =>
      Effect.sync(() => {
        const row = table.get(address)
        return row === undefined
          ? Option.none()
          : Option.some({ vclock: row.vclock, content: row.content, siblings: row.siblings })
      })

    const compareAndSet = (
      address: KvBackend.Address,
      expected: Option.Option<Uint8Array>,
      next: Option.Option<KvBackend.StoredObject>
    ): Effect.Effect<boolean, MemoryLimitExceeded | StorageError> =>
      Effect.suspend((): Effect.Effect<boolean, MemoryLimitExceeded | StorageError> => {
        const current = table.get(address)
        const matches = Option.isNone(expected)
          ? current === undefined
          : current !== undefined && equalBytes(current.vclock, expected.value)
        if (!matches) return Effect.succeed(false)
        // A change the log would refuse is not made in memory either.
        const refusal = writer?.refusal()
        if (refusal !== undefined) return Effect.fail(refusal)
        if (Option.isNone(next)) {
          table.remove(address)
          return logged({ _tag: "Remove", address })
        }
        const { content, siblings, vclock } = next.value
        const row: Row = siblings === undefined || siblings.length === 0
          ? { ...address, vclock, content, size: recordSize(address, vclock, content) }
          : { ...address, vclock, content, siblings, size: recordSize(address, vclock, content, siblings) }
        const required = table.bytes - (current?.size ?? 0) + row.size
        if (required > maxBytes) {
          return Effect.fail(
            new MemoryLimitExceeded({ limitBytes: maxBytes, usedBytes: table.bytes, requiredBytes: required })
          )
        }
        sequence++
        table.set(row)
        return logged({ _tag: "Put", entry: row })
      })

    const del = (address: KvBackend.Address): Effect.Effect<boolean, StorageError> =>
      Effect.suspend(() => {
        if (table.get(address) === undefined) return Effect.succeed(false)
        const refusal = writer?.refusal()
        if (refusal !== undefined) return Effect.fail(refusal)
        table.remove(address)
        return logged({ _tag: "Remove", address })
      })

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

    const getBucketProps = (
      type: Uint8Array,
      bucket: Uint8Array
    ): Effect.Effect<Option.Option<BucketProps.Overrides>, StorageError> =>
      Effect.sync(() => {
        return Option.map(Option.fromNullable(bucketProps.get(propsKey(type, bucket))), (p) => p.overrides)
      })

    const getWithBucketProps = (address: KvBackend.Address) =>
      Effect.sync(() => {
        const row = table.get(address)
        const entry = bucketProps.size === 0 ? undefined : bucketProps.get(propsKey(address.type, address.bucket))
        return {
          object: row === undefined
            ? Option.none()
            : Option.some<KvBackend.StoredObject>({ vclock: row.vclock, content: row.content, siblings: row.siblings }),
          props: entry === undefined ? Option.none() : Option.some(entry.overrides)
        }
      })

    const setBucketProps = (
      type: Uint8Array,
      bucket: Uint8Array,
      props: Option.Option<BucketProps.Overrides>
    ): Effect.Effect<void, StorageError> =>
      Effect.suspend(() => {
        const refusal = writer?.refusal()
        if (refusal !== undefined) return Effect.fail(refusal)
        const encoded = Option.isSome(props) ? bucketPropsRecord.encode(props.value) : undefined
        const op: wal.LogOp = {
          _tag: "BucketProps",
          type: new Uint8Array(type),
          bucket: new Uint8Array(bucket),
          props: encoded
        }
        applyBucketProps(op.type, op.bucket, encoded)
        return Effect.asVoid(logged(op))
      })

    const usage = Effect.sync((): KvStore.Usage => ({
      objects: table.objects,
      bytes: table.bytes,
      limitBytes: maxBytes
    }))

    // ---- snapshot ------------------------------------------------------------------------------
    const saving = yield* Effect.makeSemaphore(1)
    const checkpoint: Effect.Effect<void, SnapshotError | StorageError> = dataFile === undefined
      ? Effect.void
      : saving.withPermits(1)(
        Effect.suspend(() => {
          if (table.version === savedVersion) return Effect.void
          // Rows are immutable and replaced on write, so collecting the references is a consistent
          // point-in-time view even though the file is written asynchronously. In the same step the
          // log switches to a new segment: the snapshot holds exactly the segments before it.
          const entries = table.rows()
          const props = [...bucketProps.values()].map((p) => p.entry)
          const writtenVersion = table.version
          const rotated = writer === undefined ? Effect.succeed(0) : writer.rotate()
          return rotated.pipe(
            Effect.flatMap((firstNotContained) =>
              Effect.tryPromise({
                try: () =>
                  snapshotFile.write(dataFile, { serverId, sequence, walSegment: firstNotContained }, entries, props),
                catch: (cause) => new SnapshotError({ reason: "Write", path: dataFile, cause })
              }).pipe(
                Effect.tap(() => {
                  savedVersion = writtenVersion
                  walSegment = firstNotContained
                  return Metric.increment(snapshotWrites)
                }),
                // The snapshot is on disk (renamed, directory synced): the segments it holds can go.
                Effect.zipRight(Effect.promise(() => removeSegmentsBefore(dataFile, firstNotContained)))
              )
            ),
            Effect.withSpan("KvStore.snapshot", { attributes: { objects: entries.length } })
          )
        })
      ).pipe(Effect.uninterruptible)

    const saveOrLog = checkpoint.pipe(
      Effect.catchAll((e) => Effect.logError(`KV store: ${e.message}`))
    )
    yield* Effect.addFinalizer(() => saveOrLog)
    if (dataFile !== undefined) {
      const wake = Option.isSome(interval)
        ? Effect.race(Effect.sleep(interval.value), Queue.take(compactNow))
        : Queue.take(compactNow)
      // Supervised by the store's scope (forkScoped), which interrupts it before the final snapshot.
      yield* Effect.forkScoped(Effect.forever(Effect.zipRight(wake, saveOrLog)))
    }

    return {
      name: "embedded",
      get,
      compareAndSet,
      delete: del,
      listBuckets,
      listKeys,
      getWithBucketProps,
      getBucketProps,
      setBucketProps,
      usage,
      checkpoint
    }
  })

/** The map key of a bucket's properties: the type's length keeps (type, bucket) pairs apart. */
const propsKey = (type: Uint8Array, bucket: Uint8Array): string => `${type.length}:${id(type)}${id(bucket)}`

const toRow = (entry: snapshotFile.SnapshotEntry): Row => {
  const content = snapshotFile.toStoreContent(entry.content)
  const { bucket, key, type, vclock } = entry
  if (entry.siblings === undefined || entry.siblings.length === 0) {
    return { type, bucket, key, vclock, content, size: recordSize(entry, vclock, content) }
  }
  const siblings = entry.siblings.map(snapshotFile.toStoreContent)
  return { type, bucket, key, vclock, content, siblings, size: recordSize(entry, vclock, content, siblings) }
}

/** Removes the log segments a snapshot on disk holds (older than `generation`); best effort. */
const removeSegmentsBefore = async (dataFile: string, generation: number): Promise<void> => {
  for (const segment of await wal.listSegments(dataFile)) {
    if (segment.generation < generation) await fs.rm(segment.path, { force: true }).catch(() => undefined)
  }
}

/**
 * Applies the log segments the snapshot does not hold (generation >= `firstSegment`) to `table`, in
 * order, and removes the older ones (left by a crash after a snapshot's rename). A damaged tail of the
 * NEWEST segment is a write torn by a crash: it is dropped (the file truncated to its whole records)
 * with a warning. Damage anywhere else fails the start.
 */
const replay = (
  dataFile: string,
  firstSegment: number,
  table: Table,
  applyBucketProps: (type: Uint8Array, bucket: Uint8Array, props: Uint8Array | undefined) => void
): Effect.Effect<{ records: number; lastGeneration: number; warnings: Array<string> }, LogError> =>
  Effect.tryPromise({
    try: async () => {
      const warnings: Array<string> = []
      const segments = await wal.listSegments(dataFile)
      let records = 0
      let lastGeneration = 0
      for (const [i, segment] of segments.entries()) {
        lastGeneration = segment.generation
        if (segment.generation < firstSegment) {
          await fs.rm(segment.path, { force: true })
          continue
        }
        const result = await wal.read(segment.path, (op) => {
          if (op._tag === "Put") table.set(toRow(op.entry))
          else if (op._tag === "Remove") table.remove(op.address)
          else applyBucketProps(op.type, op.bucket, op.props)
        })
        records += result.records
        if (result.problem === undefined) {
          // A segment without records (e.g. the one opened after the last stop's snapshot) holds nothing:
          // removed, so restarts without writes do not pile up allocated segments.
          if (result.records === 0) await fs.rm(segment.path, { force: true })
          continue
        }
        if (i !== segments.length - 1) {
          throw new LogError({ reason: "Corrupt", path: segment.path, cause: new Error(result.problem) })
        }
        warnings.push(
          `dropped the torn end of the write-ahead log ${segment.path} (${result.problem}): ` +
            `${result.fileBytes - result.validBytes} bytes after ${result.records} whole records`
        )
        if (result.validBytes === 0) {
          await fs.rm(segment.path, { force: true })
        } else {
          const handle = await fs.open(segment.path, "r+")
          try {
            await handle.truncate(result.validBytes)
            await handle.sync()
          } finally {
            await handle.close()
          }
        }
      }
      return { records, lastGeneration, warnings }
    },
    catch: (cause) =>
      cause instanceof LogError ? cause : new LogError({ reason: "Read", path: `${dataFile}.wal-*`, cause })
  })
