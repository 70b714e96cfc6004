/**
 * A supervision tree from @warren/process: a root supervisor with a counter process and a sub-supervisor
 * holding a flaky worker. The worker crashes twice and is restarted by its supervisor (OTP's one-for-one); the
 * counter, in another branch, keeps its state throughout.
 *
 *   npx tsx examples/supervision.ts
 */
import { Process, Supervisor } from "@warren/process"
import { Deferred, Effect, Option, Schedule } from "effect"

// A gen_server: `handleCall` answers the count, `handleCast` adds to it.
const counter: Process.Behaviour<number, number, "get", number, number, never, never, never> = {
  init: (start) => Process.ok(start),
  handleCall: (_request, _from, count) => Process.reply(count, count),
  handleCast: (n, count) => Process.noreply(count + n)
}

// A task that fails on its first two runs, then says it is up and runs until it is stopped.
const flaky = (up: Deferred.Deferred<number>) => {
  let attempts = 0
  return Supervisor.task(
    "flaky",
    Effect.suspend(() => {
      attempts++
      return attempts <= 2
        ? Effect.fail(`attempt ${attempts} failed`)
        : Effect.zipRight(Deferred.succeed(up, attempts), Effect.never)
    }),
    { schedule: Schedule.spaced("10 millis").pipe(Schedule.intersect(Schedule.recurs(5))) }
  )
}

const counterChild = Supervisor.process("counter", counter, 0)

const program = Effect.gen(function*() {
  const up = yield* Deferred.make<number>()
  const root = yield* Supervisor.start({
    children: [counterChild, Supervisor.supervisor("workers", { children: [flaky(up)] })]
  })
  const ref = Option.getOrThrow(yield* Supervisor.current(root, counterChild))
  yield* Process.cast(ref, 2)
  yield* Process.cast(ref, 3)
  // The worker is up on its third attempt: its supervisor restarted it twice.
  const attempts = yield* Deferred.await(up)
  console.log(`flaky worker up after ${attempts} attempts`)
  console.log(`counter: ${yield* Process.call(ref, "get")}`)
  console.log(
    `root children: ${(yield* Supervisor.which(root)).map((c) => `${c.name} (restarts ${c.restarts})`).join(", ")}`
  )
}).pipe(Effect.scoped)

Effect.runPromise(program).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
