/**
 * The eager scheduler. A fiber woken from a Node callback (a socket or amqplib callback, no fiber running) runs at
 * once, in that callback's stack, or with `coalesce` in `process.nextTick`, right after the callback returns and
 * before any promise continuation (so everything one callback delivers is handled in one run). A fiber woken by a
 * fiber of another scheduler runs in `process.nextTick` (or at once, nested, with `nestUnderFibers`). A fiber woken while this scheduler runs a task is queued
 * behind it (FIFO), so nothing nests deeper than one level per scheduler. After `batch` tasks in a row the rest
 * waits for the next turn of the event loop (`setImmediate`), so a busy set of fibers cannot starve I/O.
 */
import * as Fiber from "effect/Fiber"
import type * as Scheduler from "effect/Scheduler"

/** Effect's default `shouldYield` reads two FiberRefs per run-loop step; this one reads a constant budget. */
const MAX_OPS = 2048

export class EagerSchedulerImpl implements Scheduler.Scheduler {
  private queue: Array<() => void> = []
  private head = 0
  /** A task of this scheduler is running: new tasks queue behind it. */
  running = false
  /** The rest of the queue waits for `setImmediate`. */
  private deferred = false
  /** A drain is due in `process.nextTick` (coalescing wake-ups from outside). */
  private ticking = false
  constructor(
    readonly batch: number,
    readonly coalesce: boolean,
    /** A fiber woken by a fiber of another scheduler runs at once (nested in its step) instead of a tick later. */
    readonly nestUnderFibers: boolean
  ) {}

  shouldYield(fiber: { readonly currentOpCount: number }): number | false {
    return fiber.currentOpCount > MAX_OPS ? 0 : false
  }

  scheduleTask(task: () => void, _priority: number): void {
    if (this.running || this.deferred || this.ticking) {
      this.queue.push(task)
      return
    }
    // Woken by a fiber of another scheduler (not from a Node callback): unless `nestUnderFibers`, run a tick
    // later, never inside that fiber's step. A fiber calling a process that answers at once would otherwise be
    // resumed synchronously, call again, and so on without ever yielding (its op count restarts at every
    // resumption).
    if (this.coalesce || (!this.nestUnderFibers && Fiber.getCurrentFiber()._tag === "Some")) {
      this.queue.push(task)
      this.ticking = true
      process.nextTick(this.drainTick)
      return
    }
    // The usual case, a wake-up from a Node callback: the task runs at once, without going through the queue.
    this.running = true
    try {
      task()
    } finally {
      this.running = false
    }
    // The direct run was the first task of this run of the scheduler: the batch counts it.
    if (this.head < this.queue.length) this.drain(1)
  }

  private readonly drainTick = (): void => {
    this.ticking = false
    if (!this.running && !this.deferred) this.drain()
  }

  /** True while a task of this scheduler runs and others are queued behind it. */
  get pending(): boolean {
    return this.running && this.head < this.queue.length
  }

  /**
   * Run the tasks queued behind the running one now, nested in it (at most `batch`): a process that has just
   * answered its callers lets them run, and handles what they send it next, before it suspends.
   */
  runQueued(): void {
    if (!this.running) return
    const queue = this.queue
    let n = 0
    while (this.head < queue.length && n++ < this.batch) {
      const task = queue[this.head]!
      queue[this.head++] = undefined as never
      task()
    }
  }

  private readonly drainLater = (): void => {
    this.deferred = false
    if (!this.running) this.drain()
  }

  /** Run the queue; `done` tasks of this run already ran (they count toward `batch`). */
  private drain(done = 0): void {
    this.running = true
    const queue = this.queue
    try {
      let n = done
      while (this.head < queue.length) {
        if (n++ >= this.batch) {
          this.deferred = true
          setImmediate(this.drainLater)
          return
        }
        const task = queue[this.head]!
        queue[this.head++] = undefined as never
        task()
      }
      queue.length = 0
      this.head = 0
    } finally {
      this.running = false
    }
  }
}
