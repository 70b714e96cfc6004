/**
 * The group-committing writer of the write-ahead log: one fiber, in the store's scope, takes every
 * append queued since its last round, writes them with one `write` and (policy `always`) one
 * `fdatasync`, then acknowledges them all at once. Appends queued while a round is on disk share the
 * next round.
 *
 * Segments grow in zero-filled steps of `growBytes`, so most rounds overwrite blocks the file already
 * has: their `fdatasync` then flushes data only, without a journal commit for a new file size.
 */
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import * as Metric from "effect/Metric"
import type * as Scope from "effect/Scope"
import * as fsSync from "node:fs"
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

/** Zero-filled growth step of a segment. */
export const growBytes = 4 * 1024 * 1024

/** Appends that share one round, acknowledged together. */
interface Batch {
  readonly _tag: "Batch"
  readonly buffers: Array<Uint8Array>
  bytes: number
  records: number
  readonly done: Deferred.Deferred<void, StorageError>
}

type Job =
  | Batch
  | { readonly _tag: "Rotate"; readonly done: Deferred.Deferred<number, StorageError> }
  | { readonly _tag: "Sync" }
  | { readonly _tag: "Stop"; readonly done: Deferred.Deferred<void> }

/** The writer's handle. */
export interface LogWriter {
  /**
   * Queues one record, given as consecutive `parts`, NOW (so the log order is the order of the calls) and returns the wait
   * for their acknowledgement (after the write, and for `always` after the fsync).
   */
  readonly append: (parts: ReadonlyArray<Uint8Array>) => Effect.Effect<void, StorageError>
  /**
   * Queues a switch to a new segment NOW: appends queued before it go to the current segment (fsynced
   * and closed), later ones to the new one. Succeeds with the new segment's generation.
   */
  readonly rotate: () => Effect.Effect<number, StorageError>
  /** Bytes of records in the current segment (its magic included). */
  readonly segmentBytes: () => number
  /** Why the log takes no more appends (closed, or failed earlier), if it does not; check before a change. */
  readonly refusal: () => StorageError | undefined
}

const ioError = (detail: string, cause: unknown) =>
  new StorageError({
    reason: "Io",
    backend: "embedded",
    detail: `${detail}${cause instanceof Error ? `: ${cause.message}` : ""}`,
    cause
  })

/** An open segment: its file, where the next record goes and how far the file is allocated. */
export interface OpenSegment {
  readonly handle: fs.FileHandle
  readonly generation: number
  position: number
  allocated: number
}

/** Creates segment `generation` (magic and its first zero-filled step on disk, directory entry too). */
export const createSegment = async (file: string, generation: number): Promise<OpenSegment> => {
  const target = wal.segmentPath(file, generation)
  const handle = await fs.open(target, "wx", 0o600)
  try {
    const first = Buffer.alloc(growBytes)
    first.set(wal.magic, 0)
    await writeAt(handle, first, 0)
    await handle.datasync()
    await syncDirectory(path.dirname(target))
    return { handle, generation, position: wal.magic.length, allocated: growBytes }
  } catch (e) {
    await handle.close().catch(() => undefined)
    throw e
  }
}

const writeAt = async (handle: fs.FileHandle, bytes: Uint8Array, position: number): Promise<void> => {
  let offset = 0
  while (offset < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, offset, bytes.length - offset, position + offset)
    offset += bytesWritten
  }
}

/**
 * A round's write, done synchronously: a `write` into the page cache takes microseconds, less than a
 * trip through libuv's thread pool (the fsync, which can take milliseconds, stays asynchronous).
 */
const writeAtSync = (handle: fs.FileHandle, bytes: Uint8Array, position: number): void => {
  let offset = 0
  while (offset < bytes.length) {
    offset += fsSync.writeSync(handle.fd, bytes, offset, bytes.length - offset, position + offset)
  }
}

/**
 * Starts the writer on the open `segment` of `file`'s log. Closing the scope drains what is queued,
 * fsyncs and closes the segment; later appends fail with `StorageError { reason: "Closed" }`.
 */
export const start = (options: {
  readonly file: string
  readonly segment: OpenSegment
  readonly sync: SyncPolicy
  readonly syncInterval: Duration.Duration
}): Effect.Effect<LogWriter, never, Scope.Scope> =>
  Effect.gen(function*() {
    let segment = options.segment
    let jobs: Array<Job> = []
    /** Set while the writer waits for work; completing it wakes the writer. */
    let idle: Deferred.Deferred<void> | undefined
    let dirty = false
    let failed: StorageError | undefined
    let closed = false

    const enqueue = (job: Job): void => {
      jobs.push(job)
      if (idle !== undefined) {
        Deferred.unsafeDone(idle, Effect.void)
        idle = undefined
      }
    }

    const segmentName = () => wal.segmentPath(options.file, segment.generation)

    const fsync = Effect.tryPromise({
      try: () => segment.handle.datasync(),
      catch: (cause) => ioError(`fdatasync of ${segmentName()} failed`, cause)
    }).pipe(
      Effect.zipRight(Metric.increment(metrics.fsyncs)),
      Effect.tap(() => {
        dirty = false
      })
    )

    /** Writes one batch; an error fails it and every later write (the file's state is unknown). */
    const commit = (batch: Batch) =>
      Effect.gen(function*() {
        if (failed === undefined) {
          const bytes = batch.buffers.length === 1 ? batch.buffers[0]! : Buffer.concat(batch.buffers, batch.bytes)
          const at = segment.position
          const written = yield* Effect.either(
            Effect.try({
              try: () => {
                if (at + bytes.length > segment.allocated) {
                  // Grow by whole zero-filled steps; this round's fsync also makes the new size durable.
                  const grow = Math.ceil((at + bytes.length - segment.allocated) / growBytes) * growBytes
                  writeAtSync(segment.handle, Buffer.alloc(grow), segment.allocated)
                  segment.allocated += grow
                }
                writeAtSync(segment.handle, bytes, at)
              },
              catch: (cause) => ioError(`write to ${segmentName()} failed`, cause)
            }).pipe(
              Effect.tap(() => {
                segment.position = at + bytes.length
                dirty = true
              }),
              Effect.zipRight(options.sync === "always" ? fsync : Effect.void)
            )
          )
          if (written._tag === "Left") failed = written.left
          yield* Metric.incrementBy(metrics.records, batch.records)
          yield* Metric.increment(metrics.writes)
        }
        Deferred.unsafeDone(batch.done, failed === undefined ? Effect.void : Effect.fail(failed))
      })

    const rotateNow = Effect.gen(function*() {
      if (failed !== undefined) return yield* Effect.fail(failed)
      if (dirty) yield* fsync
      const next = segment.generation + 1
      const previous = segment.handle
      segment = yield* Effect.tryPromise({
        try: async () => {
          await previous.close()
          return createSegment(options.file, next)
        },
        catch: (cause) => ioError(`could not start log segment ${wal.segmentPath(options.file, next)}`, cause)
      })
      return next
    }).pipe(Effect.tapError((e) =>
      Effect.sync(() => {
        failed = e
      })
    ))

    const run = (job: Job) =>
      Effect.gen(function*() {
        switch (job._tag) {
          case "Batch":
            return yield* commit(job)
          case "Rotate": {
            const result = yield* Effect.either(rotateNow)
            Deferred.unsafeDone(
              job.done,
              result._tag === "Right" ? Effect.succeed(result.right) : Effect.fail(result.left)
            )
            return
          }
          case "Sync": {
            if (dirty && failed === undefined) {
              const result = yield* Effect.either(fsync)
              if (result._tag === "Left") failed = result.left
            }
            return
          }
          case "Stop": {
            if (dirty && failed === undefined) yield* Effect.ignore(fsync)
            yield* Effect.promise(() => segment.handle.close().catch(() => undefined))
            Deferred.unsafeDone(job.done, Effect.void)
            return
          }
        }
      })

    /** One round: everything queued since the last one, in order. */
    const round = Effect.suspend(() => {
      if (jobs.length === 0) {
        const wake = Deferred.unsafeMake<void>(FiberId.none)
        idle = wake
        return Deferred.await(wake)
      }
      const taken = jobs
      jobs = []
      return Effect.forEach(taken, run, { discard: true })
    })

    // The writer fiber lives in the store's scope (forkScoped): the scope supervises and interrupts it.
    yield* Effect.forkScoped(Effect.forever(round))
    if (options.sync === "interval") {
      // Also scope-supervised: asks the writer for an fsync every interval (a no-op when nothing was written).
      yield* Effect.forkScoped(
        Effect.forever(
          Effect.zipRight(Effect.sleep(options.syncInterval), Effect.sync(() => enqueue({ _tag: "Sync" })))
        )
      )
    }
    // Runs before the fibers are interrupted (finalizers run in reverse order): refuses new work, then
    // lets the writer finish what is queued, fsync and close the segment.
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        closed = true
        const done = Deferred.unsafeMake<void>(FiberId.none)
        enqueue({ _tag: "Stop", done })
        return Deferred.await(done)
      })
    )

    const closedError = new StorageError({ reason: "Closed", backend: "embedded", detail: "the store is closed" })

    return {
      append: (parts) => {
        if (closed) return Effect.fail(closedError)
        if (failed !== undefined) return Effect.fail(failed)
        const last = jobs[jobs.length - 1]
        let batch: Batch
        if (last !== undefined && last._tag === "Batch") {
          batch = last
        } else {
          batch = { _tag: "Batch", buffers: [], bytes: 0, records: 0, done: Deferred.unsafeMake(FiberId.none) }
          enqueue(batch)
        }
        for (const part of parts) {
          batch.buffers.push(part)
          batch.bytes += part.length
        }
        batch.records++
        return Deferred.await(batch.done)
      },
      rotate: () => {
        if (closed) return Effect.fail(closedError)
        const done = Deferred.unsafeMake<number, StorageError>(FiberId.none)
        enqueue({ _tag: "Rotate", done })
        return Deferred.await(done)
      },
      segmentBytes: () => segment.position,
      refusal: () => (closed ? closedError : failed)
    }
  })
