/**
 * The group-committing writer of the write-ahead log: one fiber, in the store's scope, takes every
 * append queued since its last round, writes them with one `write` and (policy `always`) one
 * `fdatasync`, then acknowledges them all. Appends queued while a round is on disk share the next one.
 */
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import * as Metric from "effect/Metric"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { StorageError } from "../KvError.js"
import { syncDirectory } from "./snapshot.js"
import * as wal from "./wal.js"

/** When an acknowledged write is on disk. */
export type SyncPolicy = "always" | "interval" | "none"

/** Counters of the log (exported as `EmbeddedBackend.metrics`). */
export const metrics = {
  fsyncs: Metric.counter("warren_kv_wal_fsyncs", {
    description: "fdatasync calls on the KV write-ahead log",
    incremental: true
  }),
  records: Metric.counter("warren_kv_wal_records", {
    description: "Records appended to the KV write-ahead log",
    incremental: true
  }),
  writes: Metric.counter("warren_kv_wal_writes", {
    description: "Group-commit rounds (write calls) of the KV write-ahead log",
    incremental: true
  })
} as const

type Job =
  | { readonly _tag: "Append"; readonly bytes: Buffer; readonly done: Deferred.Deferred<void, StorageError> }
  | { readonly _tag: "Rotate"; readonly done: Deferred.Deferred<number, StorageError> }
  | { readonly _tag: "Sync" }
  | { readonly _tag: "Stop"; readonly done: Deferred.Deferred<void> }

/** The writer's handle. */
export interface LogWriter {
  /**
   * Queues `bytes` NOW (so the log order is the order of the calls) and returns the wait for their
   * acknowledgement (after the write, and for `always` after the fsync).
   */
  readonly append: (bytes: Buffer) => Effect.Effect<void, StorageError>
  /**
   * Queues a switch to a new segment NOW: appends queued before it go to the current segment (fsynced
   * and closed), later ones to the new one. Succeeds with the new segment's generation.
   */
  readonly rotate: () => Effect.Effect<number, StorageError>
  /** Bytes in the current segment. */
  readonly segmentBytes: () => number
}

const ioError = (detail: string, cause: unknown) =>
  new StorageError({
    reason: "Io",
    backend: "embedded",
    detail: `${detail}${cause instanceof Error ? `: ${cause.message}` : ""}`,
    cause
  })

/** Creates segment `generation` (magic written and on disk, directory entry too) and opens it for appending. */
export const createSegment = async (file: string, generation: number): Promise<fs.FileHandle> => {
  const target = wal.segmentPath(file, generation)
  const handle = await fs.open(target, "ax", 0o600)
  try {
    await handle.write(wal.magic)
    await handle.datasync()
    await syncDirectory(path.dirname(target))
    return handle
  } catch (e) {
    await handle.close().catch(() => undefined)
    throw e
  }
}

const writeAll = async (handle: fs.FileHandle, bytes: Buffer): Promise<void> => {
  let offset = 0
  while (offset < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, offset, bytes.length - offset)
    offset += bytesWritten
  }
}

/**
 * Starts the writer on the open segment `generation` of `file`. Closing the scope drains the queue,
 * fsyncs and closes the segment; later appends fail with `StorageError { reason: "Closed" }`.
 */
export const start = (options: {
  readonly file: string
  readonly generation: number
  readonly handle: fs.FileHandle
  readonly sync: SyncPolicy
  readonly syncInterval: Duration.Duration
}): Effect.Effect<LogWriter, never, Scope.Scope> =>
  Effect.gen(function*() {
    const queue = yield* Queue.unbounded<Job>()
    let handle = options.handle
    let generation = options.generation
    let bytesInSegment = wal.magic.length
    let dirty = false
    let failed: StorageError | undefined
    let closed = false

    const fsync = Effect.tryPromise({
      try: () => handle.datasync(),
      catch: (cause) => ioError(`fdatasync of ${wal.segmentPath(options.file, generation)} failed`, cause)
    }).pipe(Effect.zipRight(Metric.increment(metrics.fsyncs)), Effect.tap(() => {
      dirty = false
    }))

    /** Writes one round of appends; an error fails them and every later write (the file state is unknown). */
    const commit = (appends: ReadonlyArray<Extract<Job, { _tag: "Append" }>>) =>
      Effect.gen(function*() {
        if (appends.length === 0) return
        if (failed === undefined) {
          const bytes = appends.length === 1 ? appends[0]!.bytes : Buffer.concat(appends.map((a) => a.bytes))
          const written = yield* Effect.either(Effect.tryPromise({
            try: () => writeAll(handle, bytes),
            catch: (cause) => ioError(`write to ${wal.segmentPath(options.file, generation)} failed`, cause)
          }).pipe(
            Effect.tap(() => {
              bytesInSegment += bytes.length
              dirty = true
            }),
            Effect.zipRight(options.sync === "always" ? fsync : Effect.void)
          ))
          if (written._tag === "Left") failed = written.left
          yield* Metric.incrementBy(metrics.records, appends.length)
          yield* Metric.increment(metrics.writes)
        }
        for (const a of appends) {
          if (failed === undefined) Deferred.unsafeDone(a.done, Effect.void)
          else Deferred.unsafeDone(a.done, Effect.fail(failed))
        }
      })

    const rotateNow = Effect.gen(function*() {
      if (failed !== undefined) return yield* Effect.fail(failed)
      if (dirty) yield* fsync
      const next = generation + 1
      const opened = yield* Effect.tryPromise({
        try: async () => {
          await handle.close()
          return createSegment(options.file, next)
        },
        catch: (cause) => ioError(`could not start log segment ${wal.segmentPath(options.file, next)}`, cause)
      })
      handle = opened
      generation = next
      bytesInSegment = wal.magic.length
      return next
    }).pipe(Effect.tapError((e) =>
      Effect.sync(() => {
        failed = e
      })
    ))

    const round = (jobs: Chunk.Chunk<Job>) =>
      Effect.gen(function*() {
        let appends: Array<Extract<Job, { _tag: "Append" }>> = []
        for (const job of jobs) {
          if (job._tag === "Append") {
            appends.push(job)
            continue
          }
          yield* commit(appends)
          appends = []
          if (job._tag === "Rotate") {
            const result = yield* Effect.either(rotateNow)
            Deferred.unsafeDone(job.done, result._tag === "Right" ? Effect.succeed(result.right) : Effect.fail(result.left))
          } else if (job._tag === "Sync") {
            if (dirty && failed === undefined) {
              const result = yield* Effect.either(fsync)
              if (result._tag === "Left") failed = result.left
            }
          } else {
            if (dirty && failed === undefined) yield* Effect.ignore(fsync)
            yield* Effect.promise(() => handle.close().catch(() => undefined))
            Deferred.unsafeDone(job.done, Effect.void)
          }
        }
        yield* commit(appends)
      })

    // The writer fiber lives in the store's scope (forkScoped): the scope supervises and interrupts it.
    yield* Effect.forkScoped(Effect.forever(Effect.flatMap(Queue.takeBetween(queue, 1, 8192), round)))
    if (options.sync === "interval") {
      // Also scope-supervised: asks the writer for an fsync every interval (a no-op when nothing was written).
      yield* Effect.forkScoped(
        Effect.forever(Effect.zipRight(Effect.sleep(options.syncInterval), Queue.offer(queue, { _tag: "Sync" })))
      )
    }
    // Runs before the fibers are interrupted (finalizers run in reverse order): refuses new work, then
    // lets the writer finish what is queued, fsync and close the segment.
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        closed = true
        const done = Deferred.unsafeMake<void>(FiberId.none)
        Queue.unsafeOffer(queue, { _tag: "Stop", done })
        return Deferred.await(done)
      })
    )

    const closedError = new StorageError({ reason: "Closed", backend: "embedded", detail: "the store is closed" })

    return {
      append: (bytes) => {
        if (closed) return Effect.fail(closedError)
        if (failed !== undefined) return Effect.fail(failed)
        const done = Deferred.unsafeMake<void, StorageError>(FiberId.none)
        Queue.unsafeOffer(queue, { _tag: "Append", bytes, done })
        return Deferred.await(done)
      },
      rotate: () => {
        if (closed) return Effect.fail(closedError)
        const done = Deferred.unsafeMake<number, StorageError>(FiberId.none)
        Queue.unsafeOffer(queue, { _tag: "Rotate", done })
        return Deferred.await(done)
      },
      segmentBytes: () => bytesInSegment
    }
  })

