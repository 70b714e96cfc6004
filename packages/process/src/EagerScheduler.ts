/**
 * An eager `Scheduler` for fibers fed by Node callbacks, like a BEAM process scheduled as soon as its message
 * arrives. A fiber woken from a Node callback (an amqplib or socket callback, no fiber running) runs at once,
 * before that callback returns; a fiber woken while the scheduler is running a task is queued behind it, in order;
 * a fiber woken by a fiber of another scheduler runs in `process.nextTick` (never nested in that fiber's step).
 * After `batch` tasks in a row (default 256) the rest waits for the next turn of the event loop (`setImmediate`),
 * so busy fibers cannot keep I/O waiting.
 *
 * Effect's default scheduler runs every wake-up in a later microtask: the same work, one hop later per wake-up.
 * Give it to a process with `Process.start(behaviour, arg, { scheduler })`: the process fiber then handles a
 * message cast from a socket callback inside that callback, resumes the callers it answers on the same scheduler
 * run, and handles what they send it next before it suspends (see `StartOptions.scheduler`).
 *
 * @example
 * ```ts
 * const scheduler = EagerScheduler.make()
 * const ref = yield* Process.start(behaviour, arg, { scheduler })
 * // or for any fibers: effect.pipe(Effect.withScheduler(scheduler))
 * ```
 *
 * @since 0.2.0
 */
import type * as Scheduler from "effect/Scheduler"
import { EagerSchedulerImpl } from "./internal/eagerScheduler.js"

/** Options of `make`. */
export interface Options {
  /** Tasks run in a row before the rest waits for `setImmediate` (default 256). */
  readonly batch?: number | undefined
  /**
   * Coalesce wake-ups from outside (default false): instead of running at once, the fibers woken by one Node
   * callback run in `process.nextTick`, right after that callback returns and before any promise continuation.
   * A source that delivers many messages in one callback (amqplib parsing a socket read of many replies) then
   * wakes each fiber once for all of them, not once per message.
   */
  readonly coalesce?: boolean | undefined
  /**
   * Run a fiber woken by a fiber of another scheduler at once, nested in that fiber's step (default false: in
   * `process.nextTick`). For fibers that only ever wait for their own I/O and for Effects they run themselves
   * (the PB server's connections): the wake-up by such an Effect's fiber serves on without a hop. Not for
   * processes that fibers call in a loop: a process answering at once would resume its caller synchronously,
   * again and again, without ever yielding.
   */
  readonly nestUnderFibers?: boolean | undefined
}

/**
 * A new eager scheduler. Fibers on one scheduler never nest inside each other (they queue); give related fibers
 * (a process and the processes it feeds synchronously) the same one.
 *
 * @since 0.2.0
 */
export const make = (options?: Options): Scheduler.Scheduler => {
  const batch = options?.batch ?? 256
  if (!Number.isInteger(batch) || batch < 1) {
    throw new RangeError(`EagerScheduler batch must be a positive integer, got ${batch}`)
  }
  return new EagerSchedulerImpl(batch, options?.coalesce ?? false, options?.nestUnderFibers ?? false)
}

/** True if `scheduler` was made by `make`. @since 0.2.0 */
export const isEagerScheduler = (scheduler: Scheduler.Scheduler): boolean => scheduler instanceof EagerSchedulerImpl
