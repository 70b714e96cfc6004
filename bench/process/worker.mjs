// One run of one process-core workload for one contender, in its own Node process (so runs do not share a
// warmed-up or polluted heap). Args (JSON argv[2]): { workload, contender, concurrency, warmupMs, durationMs,
// children, engine }. `engine` is the dist directory of the process package to load (this branch's by default).
import { performance } from "node:perf_hooks"
import { childArgs, failChild } from "../lib/child.mjs"
import { cpuMicros } from "../lib/stats.mjs"

const args = childArgs()
const distDir = args.engine ?? new URL("../../packages/process/dist/", import.meta.url).pathname
const { Effect, Exit, Fiber, Ref, Runtime, Scope, SynchronizedRef } = await import("effect")
const { Process, DynamicSupervisor } = await import(`${distDir}index.js`)

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// Effect 3.22 schedules each fiber's resumptions on its own runner, through microtasks until one runner has
// drained 2048 times in a row; two fibers handing work to each other never get there, so a pure in-memory
// ping-pong never lets Node run its timers. The load loops therefore give Node one macrotask turn every
// 256 operations (the same for every contender); real callers have I/O between their calls.
const YIELD_EVERY = 256
const macrotask = Effect.async((resume) => {
  setImmediate(() => resume(Effect.void))
})
const immediate = () => new Promise((resolve) => setImmediate(resolve))

/** A counter: casts add, calls answer the count (`get`) or add one and answer (`inc`). */
const counter = {
  init: (n) => Process.ok(n),
  handleCast: (k, n) => Process.noreply(n + k),
  handleCall: (request, _from, n) => (request === "get" ? Process.reply(n, n) : Process.reply(n + 1, n + 1))
}

/**
 * Runs `makeLoops(control)` (which starts the load and returns a promise of its end), warms up, then measures
 * `control.completed` over the duration with the CPU used by the whole Node process.
 */
const measureLoad = async (startLoad) => {
  const control = { measuring: false, stopping: false, completed: 0 }
  const done = startLoad(control)
  await sleep(args.warmupMs)
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  control.measuring = true
  await sleep(args.durationMs)
  control.measuring = false
  const cpu1 = process.cpuUsage()
  const elapsedMs = performance.now() - t0
  const count = control.completed
  control.stopping = true
  await done
  const cpu = cpuMicros(cpu0, cpu1)
  return {
    operations: count,
    throughput: count / (elapsedMs / 1000),
    cpuUsPerOp: cpu / count,
    cpuUtil: cpu / 1000 / elapsedMs
  }
}

// -- the Ref: what writing the state to the process's Ref costs per message ----------------------------------

const setRefWrites = async (contender) => {
  if (args.engine !== undefined) return
  const engine = await import(`${distDir}internal/engine.js`)
  const mode = { "ref": engine.AT_YIELD, "ref-per-message": engine.PER_MESSAGE, "no-ref": engine.NEVER }[contender]
  if (mode === undefined) throw new Error(`unknown contender ${contender}`)
  engine.unsafeSetRefWrites(mode)
}

/** Casts in bursts of 256, then one call (which waits for the burst): 257 messages per round trip. */
const castBursts = (control) =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const ref = yield* Process.start(counter, 0)
    while (!control.stopping) {
      for (let i = 0; i < 256; i++) Process.unsafeCast(ref, 1)
      yield* Process.call(ref, "get")
      if (control.measuring) control.completed += 257
      yield* macrotask
    }
  })))

/** Sequential calls from `concurrency` fibers. */
const fiberCalls = (concurrency) => (control) =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const ref = yield* Process.start(counter, 0)
    const loop = Effect.gen(function*() {
      for (let n = 1; !control.stopping; n++) {
        yield* Process.call(ref, "inc")
        if (control.measuring) control.completed++
        if (n % YIELD_EVERY === 0) yield* macrotask
      }
    })
    yield* Effect.all(Array.from({ length: concurrency }, () => loop), { concurrency: "unbounded", discard: true })
  })))

/** Sequential calls from `concurrency` async functions, each call one `Runtime.runPromise`. */
const promiseCalls = (concurrency) => async (control) => {
  const scope = Effect.runSync(Scope.make())
  const ref = await Effect.runPromise(Scope.extend(Process.start(counter, 0), scope))
  const runPromise = Runtime.runPromise(Runtime.defaultRuntime)
  const loop = async () => {
    for (let n = 1; !control.stopping; n++) {
      await runPromise(Process.call(ref, "inc"))
      if (control.measuring) control.completed++
      if (n % YIELD_EVERY === 0) await immediate()
    }
  }
  await Promise.all(Array.from({ length: concurrency }, loop))
  await Effect.runPromise(Scope.close(scope, Exit.void))
}

/**
 * The floor: the same handoff without the process core. A server fiber drains an array of waiting callers and
 * resumes each (`Effect.async` on both sides, as in the core), no behaviour, no timers.
 */
const bareServer = () => {
  let queue = []
  let wake
  const waitForWork = Effect.async((resume) => {
    wake = resume
  })
  const server = Effect.gen(function*() {
    for (;;) {
      if (queue.length === 0) {
        yield* waitForWork
        continue
      }
      const batch = queue
      queue = []
      for (const entry of batch) entry.resume(Exit.succeed(entry.request + 1))
    }
  })
  const call = (request) =>
    Effect.async((resume) => {
      queue.push({ request, resume })
      if (wake !== undefined) {
        const w = wake
        wake = undefined
        w(Effect.void)
      }
    })
  return { server, call }
}

const bareFiberCalls = (concurrency) => (control) => {
  const { server, call } = bareServer()
  return Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    yield* Effect.forkScoped(server)
    const loop = Effect.gen(function*() {
      for (let n = 1; !control.stopping; n++) {
        yield* call(1)
        if (control.measuring) control.completed++
        if (n % YIELD_EVERY === 0) yield* macrotask
      }
    })
    yield* Effect.all(Array.from({ length: concurrency }, () => loop), { concurrency: "unbounded", discard: true })
  })))
}

const barePromiseCalls = (concurrency) => async (control) => {
  const { server, call } = bareServer()
  const serverFiber = Effect.runFork(server)
  const runPromise = Runtime.runPromise(Runtime.defaultRuntime)
  const loop = async () => {
    for (let n = 1; !control.stopping; n++) {
      await runPromise(call(1))
      if (control.measuring) control.completed++
      if (n % YIELD_EVERY === 0) await immediate()
    }
  }
  await Promise.all(Array.from({ length: concurrency }, loop))
  await Effect.runPromise(Fiber.interrupt(serverFiber))
}

// -- state cells: one update per iteration in a fiber loop ---------------------------------------------------

const stateCell = async (contender) => {
  const iterations = 200_000
  const body = {
    "local": () =>
      Effect.gen(function*() {
        let state = 0
        for (let i = 0; i < iterations; i++) {
          state = i
          yield* Effect.void
        }
        return state
      }),
    "Ref": () =>
      Effect.gen(function*() {
        const ref = yield* Ref.make(0)
        for (let i = 0; i < iterations; i++) yield* Ref.set(ref, i)
        return yield* Ref.get(ref)
      }),
    "SynchronizedRef": () =>
      Effect.gen(function*() {
        const ref = yield* SynchronizedRef.make(0)
        for (let i = 0; i < iterations; i++) yield* SynchronizedRef.set(ref, i)
        return yield* SynchronizedRef.get(ref)
      })
  }[contender]
  await Effect.runPromise(body()) // warm-up
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  await Effect.runPromise(body())
  const elapsedMs = performance.now() - t0
  const cpu = cpuMicros(cpu0, process.cpuUsage())
  return { nsPerUpdate: (elapsedMs * 1e6) / iterations, cpuNsPerUpdate: (cpu * 1000) / iterations }
}

// -- idle children: heap and start cost per child -------------------------------------------------------------

const idleChildren = async (contender) => {
  const n = args.children
  const gc = globalThis.gc
  if (gc === undefined) throw new Error("run with --expose-gc")
  const settle = async () => {
    for (let i = 0; i < 5; i++) await sleep(10)
  }
  const heap = () => {
    gc()
    gc()
    return process.memoryUsage().heapUsed
  }
  const scope = Effect.runSync(Scope.make())
  const handles = []
  let startOne
  if (contender === "dynamic-child") {
    const sup = Effect.runSync(Scope.extend(DynamicSupervisor.make({ run: () => Effect.never }), scope))
    startOne = Effect.suspend(() => DynamicSupervisor.startChild(sup, undefined))
  } else if (contender === "bare-fiber") {
    startOne = Effect.forkIn(Effect.never, scope)
  } else if (contender === "process") {
    const idle = { init: () => Process.ok(0), handleCall: (_r, _f, n) => Process.reply(n, n) }
    startOne = Scope.extend(Process.start(idle, undefined), scope)
  } else throw new Error(`unknown contender ${contender}`)
  // one round first, so that code and shapes exist before the measured one
  Effect.runSync(Effect.replicateEffect(startOne, 100, { discard: true }))
  await settle()
  const before = heap()
  const t0 = performance.now()
  const cpu0 = process.cpuUsage()
  Effect.runSync(Effect.forEach(Array.from({ length: n }), () => Effect.map(startOne, (h) => handles.push(h)), { discard: true }))
  await settle()
  const cpu = cpuMicros(cpu0, process.cpuUsage())
  const elapsedMs = performance.now() - t0
  const after = heap()
  const result = { bytesPerChild: (after - before) / n, startCpuUsPerChild: cpu / n, startMsTotal: elapsedMs }
  const t1 = performance.now()
  await Effect.runPromise(Scope.close(scope, Exit.void))
  result.closeUsPerChild = ((performance.now() - t1) * 1000) / n
  return result
}

try {
  let result
  switch (args.workload) {
    case "ref-casts":
      await setRefWrites(args.contender)
      result = await measureLoad(castBursts)
      break
    case "ref-calls":
      await setRefWrites(args.contender)
      result = await measureLoad(fiberCalls(1))
      break
    case "calls": {
      const c = args.concurrency
      const run = {
        "fiber": fiberCalls(c),
        "promise": promiseCalls(c),
        "bare-fiber": bareFiberCalls(c),
        "bare-promise": barePromiseCalls(c),
        "base-fiber": fiberCalls(c),
        "base-promise": promiseCalls(c)
      }[args.contender]
      result = await measureLoad(run)
      break
    }
    case "state-cell":
      result = await stateCell(args.contender)
      break
    case "idle-children":
      result = await idleChildren(args.contender)
      break
    default:
      throw new Error(`unknown workload ${args.workload}`)
  }
  if (process.send === undefined) console.log(JSON.stringify(result)) // run by hand
  else process.send({ type: "result", result })
  setTimeout(() => process.exit(0), 20)
} catch (error) {
  failChild(error)
}
