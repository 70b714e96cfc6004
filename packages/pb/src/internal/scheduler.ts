/**
 * The scheduler of the connections' fibers: a fiber woken from outside any fiber (a socket event) runs at once,
 * in that event's callback, like a BEAM process scheduled when its message arrives; a fiber woken while another
 * task of this scheduler runs is queued behind it. After `BATCH` tasks in a row the rest waits for the next turn
 * of the event loop (`setImmediate`), so one busy connection cannot keep the others' I/O waiting.
 *
 * The default scheduler would defer every wake-up to a microtask and run the fiber there: the same work, one hop
 * later, measured as ~2x the server CPU per request of serving in the callback (docs/benchmarks.md).
 */
import * as Scheduler from "effect/Scheduler"

const BATCH = 256

/**
 * Effect's default `shouldYield` reads two FiberRefs (the op budget and the priority) on every run-loop step; the
 * connections' fibers yield after the default budget of 2,048 steps, read from a constant.
 */
const MAX_OPS = 2048
const shouldYield = (fiber: { readonly currentOpCount: number }): number | false =>
  fiber.currentOpCount > MAX_OPS ? 0 : false

export const makeEagerScheduler = (): Scheduler.Scheduler => {
  const queue: Array<() => void> = []
  let head = 0
  let running = false
  let deferred = false
  const drain = (): void => {
    deferred = false
    running = true
    try {
      let n = 0
      while (head < queue.length) {
        if (n++ >= BATCH) {
          deferred = true
          setImmediate(drain)
          return
        }
        const task = queue[head]!
        queue[head++] = undefined as never
        task()
      }
      queue.length = 0
      head = 0
    } finally {
      running = false
    }
  }
  return Scheduler.make((task) => {
    if (running || deferred) {
      queue.push(task)
      return
    }
    // The usual case, a wake-up from a socket event: the task runs at once, without going through the queue.
    running = true
    try {
      task()
    } finally {
      running = false
    }
    if (head < queue.length) drain()
  }, shouldYield)
}
