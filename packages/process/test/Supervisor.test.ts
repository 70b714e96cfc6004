import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Metric, Option, Schedule, Scope, TestClock } from "effect"
import { Process, Supervisor } from "@warren/process"

/** Run the forked fibers until they are all suspended. */
const settle = Effect.repeatN(Effect.yieldNow(), 20)

type Command = "crash" | "stop normal" | "stop abnormal"

/** A worker that records its lifecycle; `crash` kills it with a defect. */
const worker = (name: string, events: Array<string>): Process.Behaviour<
  void,
  number,
  "ping",
  string,
  Command,
  never,
  string,
  never
> => ({
  init: () => {
    events.push(`${name} init`)
    return Process.ok(0)
  },
  handleCall: (_ping, _from, n) => Process.reply(`${name} pong`, n),
  handleCast: (command, n) => {
    switch (command) {
      case "crash":
        return Effect.die(new Error(`${name} crashed`))
      case "stop normal":
        return Process.stop("normal", n)
      case "stop abnormal":
        return Process.stop("bad", n)
    }
  },
  terminate: (reason) => {
    events.push(`${name} terminate ${reason._tag}`)
  }
})

const currentRef = <A>(sup: Supervisor.Supervisor, child: Supervisor.Child<A, never>) =>
  Effect.flatMap(Supervisor.current(sup, child), (option) =>
    Option.isSome(option) ? Effect.succeed(option.value) : Effect.dieMessage(`${child.name} is not running`))

describe("Supervisor", () => {
  it.scoped("restarts a crashed child after the schedule's delay and counts restarts", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      const a = Supervisor.process("a", worker("a", events), undefined, {
        schedule: Schedule.spaced("1 second")
      })
      const sup = yield* Supervisor.start({ children: [a] })
      const first = yield* currentRef(sup, a)
      yield* Process.cast(first, "crash")
      yield* settle
      assert.isTrue(Option.isNone(yield* Supervisor.current(sup, a)))
      yield* TestClock.adjust("999 millis")
      yield* settle
      assert.isTrue(Option.isNone(yield* Supervisor.current(sup, a)))
      assert.strictEqual(yield* Supervisor.restarts(sup, a), 0)
      yield* TestClock.adjust("1 millis")
      yield* settle
      const second = yield* currentRef(sup, a)
      assert.notStrictEqual(second.id, first.id)
      assert.strictEqual(yield* Process.call(second, "ping"), "a pong")
      assert.strictEqual(yield* Supervisor.restarts(sup, "a"), 1)
      assert.deepStrictEqual(events, ["a init", "a terminate Crashed", "a init"])
      assert.deepStrictEqual(yield* Supervisor.which(sup), [{ name: "a", restarts: 1, running: true }])
    }))

  it.scoped("counts restarts in a metric tagged with the child's name", () =>
    Effect.gen(function*() {
      const metered = Supervisor.process("metered-child", worker("m", []), undefined)
      const counter = Metric.tagged(Supervisor.restartsTotal, "child", "metered-child")
      const before = (yield* Metric.value(counter)).count
      const sup = yield* Supervisor.start({ children: [metered] })
      yield* Process.cast(yield* currentRef(sup, metered), "crash")
      yield* settle
      yield* Process.cast(yield* currentRef(sup, metered), "crash")
      yield* settle
      assert.strictEqual((yield* Metric.value(counter)).count - before, 2)
    }))

  it.scoped("one for one: a sibling is not touched by a restart", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      const a = Supervisor.process("a", worker("a", events), undefined)
      const b = Supervisor.process("b", worker("b", events), undefined)
      const sup = yield* Supervisor.start({ children: [a, b] })
      const b1 = yield* currentRef(sup, b)
      yield* Process.cast(yield* currentRef(sup, a), "crash")
      yield* settle
      assert.strictEqual(yield* Supervisor.restarts(sup, a), 1)
      assert.strictEqual(yield* Supervisor.restarts(sup, b), 0)
      assert.strictEqual((yield* currentRef(sup, b)).id, b1.id)
      assert.deepStrictEqual(events, ["a init", "b init", "a terminate Crashed", "a init"])
    }))

  it.scoped("gives up when the schedule ends: stops every child and exposes the final failure", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      const a = Supervisor.process("a", worker("a", events), undefined)
      const b = Supervisor.process("b", worker("b", events), undefined, {
        schedule: Schedule.recurs(1)
      })
      const sup = yield* Supervisor.start({ children: [a, b] })
      yield* Process.cast(yield* currentRef(sup, b), "crash")
      yield* settle
      assert.strictEqual(yield* Supervisor.restarts(sup, b), 1)
      yield* Process.cast(yield* currentRef(sup, b), "crash")
      const error = yield* Effect.flip(Supervisor.await(sup))
      assert.strictEqual(error._tag, "SupervisorGaveUp")
      assert.strictEqual(error.child, "b")
      assert.strictEqual(error.restarts, 1)
      const failure = Supervisor.finalFailure(error)
      assert.instanceOf(failure, Error)
      assert.strictEqual((failure as Error).message, "b crashed")
      // every child is stopped by the time await fails
      assert.deepStrictEqual(events, [
        "a init",
        "b init",
        "b terminate Crashed",
        "b init",
        "b terminate Crashed",
        "a terminate Shutdown"
      ])
      assert.deepStrictEqual(yield* Supervisor.which(sup), [
        { name: "a", restarts: 0, running: false },
        { name: "b", restarts: 1, running: false }
      ])
    }))

  it.scoped("exponential backoff between failed starts", () =>
    Effect.gen(function*() {
      const attempts: Array<number> = []
      const flaky = Supervisor.task(
        "flaky",
        Effect.gen(function*() {
          attempts.push(yield* TestClock.currentTimeMillis)
          return yield* Effect.fail("refused")
        }),
        { schedule: Schedule.exponential("100 millis").pipe(Schedule.intersect(Schedule.recurs(3))) }
      )
      const sup = yield* Supervisor.start({ children: [flaky] })
      const gaveUp = yield* Effect.fork(Supervisor.await(sup))
      yield* TestClock.adjust("100 millis")
      yield* TestClock.adjust("200 millis")
      yield* settle
      assert.deepStrictEqual(attempts, [0, 100, 300])
      yield* TestClock.adjust("400 millis")
      const exit = yield* Fiber.await(gaveUp)
      assert.deepStrictEqual(attempts, [0, 100, 300, 700])
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        const error = Cause.failureOption(exit.cause)
        assert.isTrue(Option.isSome(error) && Supervisor.finalFailure(error.value) === "refused")
      }
    }))

  it.scoped("start fails with SupervisorGaveUp when a child cannot even start once", () =>
    Effect.gen(function*() {
      const never = Supervisor.task("never", Effect.fail("nope"), { schedule: Schedule.stop })
      const error = yield* Effect.flip(Supervisor.start({ children: [never] }))
      assert.strictEqual(error.child, "never")
      assert.strictEqual(Supervisor.finalFailure(error), "nope")
    }))

  it.scoped("transient children restart only after abnormal exits, temporary never", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      const t = Supervisor.process("t", worker("t", events), undefined, { restart: "transient" })
      const tmp = Supervisor.process("tmp", worker("tmp", events), undefined, { restart: "temporary" })
      const sup = yield* Supervisor.start({ children: [t, tmp] })
      yield* Process.cast(yield* currentRef(sup, t), "stop abnormal")
      yield* settle
      assert.strictEqual(yield* Supervisor.restarts(sup, t), 1)
      yield* Process.exit(yield* currentRef(sup, t))
      yield* settle
      assert.strictEqual(yield* Supervisor.restarts(sup, t), 1)
      assert.isTrue(Option.isNone(yield* Supervisor.current(sup, t)))
      yield* Process.cast(yield* currentRef(sup, tmp), "crash")
      yield* settle
      assert.strictEqual(yield* Supervisor.restarts(sup, tmp), 0)
      assert.isTrue(Option.isNone(yield* Supervisor.current(sup, tmp)))
    }))

  it.scoped("a permanent child is restarted even after a normal exit", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      const p = Supervisor.process("p", worker("p", events), undefined)
      const sup = yield* Supervisor.start({ children: [p] })
      yield* Process.exit(yield* currentRef(sup, p))
      yield* settle
      assert.strictEqual(yield* Supervisor.restarts(sup, p), 1)
      assert.isTrue(Option.isSome(yield* Supervisor.current(sup, p)))
    }))

  it.effect("closing the Scope stops children in reverse start order and await succeeds", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      const scope = yield* Scope.make()
      const sup = yield* Supervisor.start({
        children: [
          Supervisor.process("a", worker("a", events), undefined),
          Supervisor.process("b", worker("b", events), undefined),
          Supervisor.process("c", worker("c", events), undefined)
        ]
      }).pipe(Scope.extend(scope))
      yield* Scope.close(scope, Exit.void)
      yield* Supervisor.await(sup)
      assert.deepStrictEqual(events, [
        "a init",
        "b init",
        "c init",
        "c terminate Shutdown",
        "b terminate Shutdown",
        "a terminate Shutdown"
      ])
    }))

  it.scoped("intensity allows N restarts per sliding period", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      const a = Supervisor.process("a", worker("a", events), undefined)
      const sup = yield* Supervisor.start({ children: [a], schedule: Supervisor.intensity(2, "10 seconds") })
      const crash = Effect.flatMap(currentRef(sup, a), (ref) => Process.cast(ref, "crash")).pipe(Effect.zipLeft(settle))
      yield* crash
      yield* TestClock.adjust("6 seconds")
      yield* crash
      assert.strictEqual(yield* Supervisor.restarts(sup, a), 2)
      // the first restart leaves the window: one more is allowed
      yield* TestClock.adjust("5 seconds")
      yield* crash
      assert.strictEqual(yield* Supervisor.restarts(sup, a), 3)
      // two restarts within the last 10 seconds already: give up
      yield* crash
      const error = yield* Effect.flip(Supervisor.await(sup))
      assert.strictEqual(error.restarts, 3)
    }))

  it.scoped("a child whose init ignores stays down and is not restarted", () =>
    Effect.gen(function*() {
      const ignoring = Supervisor.process("ignoring", { init: () => Process.ignore }, undefined)
      const sup = yield* Supervisor.start({ children: [ignoring] })
      yield* TestClock.adjust("1 minute")
      assert.deepStrictEqual(yield* Supervisor.which(sup), [{ name: "ignoring", restarts: 0, running: false }])
    }))

  it.scoped("supervisors nest: an inner supervisor that gives up is restarted by the outer one", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      const w = Supervisor.process("w", worker("w", events), undefined, { schedule: Schedule.stop })
      const inner = Supervisor.supervisor("inner", { children: [w] })
      const outer = yield* Supervisor.start({ children: [inner] })
      const innerSup = yield* currentRef(outer, inner)
      yield* Process.cast(yield* currentRef(innerSup, w), "crash")
      yield* settle
      assert.strictEqual(yield* Supervisor.restarts(outer, inner), 1)
      const innerSup2 = yield* currentRef(outer, inner)
      assert.notStrictEqual(innerSup2, innerSup)
      assert.deepStrictEqual(events, ["w init", "w terminate Crashed", "w init"])
    }))

  it.scoped("duplicate child names are a defect", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(
        Supervisor.start({ children: [Supervisor.task("x", Effect.never), Supervisor.task("x", Effect.never)] })
      )
      assert.isTrue(Exit.isFailure(exit) && Cause.isDie(exit.cause))
    }))

  describe("one_for_all and rest_for_one", () => {
    const three = (events: Array<string>, options?: Supervisor.ChildOptions<never>) => {
      const a = Supervisor.process("a", worker("a", events), undefined, options)
      const b = Supervisor.process("b", worker("b", events), undefined, options)
      const c = Supervisor.process("c", worker("c", events), undefined, options)
      return [a, b, c] as const
    }

    it.scoped("one_for_all: a crash stops the others in reverse order, then restarts all in order", () =>
      Effect.gen(function*() {
        const events: Array<string> = []
        const [a, b, c] = three(events)
        const sup = yield* Supervisor.start({ children: [a, b, c], strategy: "one_for_all" })
        const before = [yield* currentRef(sup, a), yield* currentRef(sup, b), yield* currentRef(sup, c)]
        yield* Process.cast(before[1]!, "crash")
        yield* settle
        assert.deepStrictEqual(events, [
          "a init",
          "b init",
          "c init",
          "b terminate Crashed",
          "c terminate Shutdown",
          "a terminate Shutdown",
          "a init",
          "b init",
          "c init"
        ])
        const after = [yield* currentRef(sup, a), yield* currentRef(sup, b), yield* currentRef(sup, c)]
        for (let i = 0; i < 3; i++) assert.notStrictEqual(after[i]!.id, before[i]!.id)
        assert.deepStrictEqual(yield* Supervisor.which(sup), [
          { name: "a", restarts: 1, running: true },
          { name: "b", restarts: 1, running: true },
          { name: "c", restarts: 1, running: true }
        ])
        assert.strictEqual(yield* Process.call(after[2]!, "ping"), "c pong")
      }))

    it.scoped("rest_for_one: the failed child and those started after it restart, in order; earlier ones stay", () =>
      Effect.gen(function*() {
        const events: Array<string> = []
        const [a, b, c] = three(events)
        const sup = yield* Supervisor.start({ children: [a, b, c], strategy: "rest_for_one" })
        const a1 = yield* currentRef(sup, a)
        yield* Process.cast(yield* currentRef(sup, b), "crash")
        yield* settle
        assert.deepStrictEqual(events, [
          "a init",
          "b init",
          "c init",
          "b terminate Crashed",
          "c terminate Shutdown",
          "b init",
          "c init"
        ])
        assert.strictEqual((yield* currentRef(sup, a)).id, a1.id)
        assert.deepStrictEqual((yield* Supervisor.which(sup)).map((i) => i.restarts), [0, 1, 1])
        // the last child restarts alone
        events.length = 0
        yield* Process.cast(yield* currentRef(sup, c), "crash")
        yield* settle
        assert.deepStrictEqual(events, ["c terminate Crashed", "c init"])
      }))

    it.scoped("group strategies: a normal end of a transient child and any end of a temporary one restart nobody", () =>
      Effect.gen(function*() {
        const events: Array<string> = []
        const t = Supervisor.process("t", worker("t", events), undefined, { restart: "transient" })
        const tmp = Supervisor.process("tmp", worker("tmp", events), undefined, { restart: "temporary" })
        const p = Supervisor.process("p", worker("p", events), undefined)
        const sup = yield* Supervisor.start({ children: [t, tmp, p], strategy: "one_for_all" })
        yield* Process.exit(yield* currentRef(sup, t))
        yield* Process.cast(yield* currentRef(sup, tmp), "crash")
        yield* settle
        assert.deepStrictEqual(events, [
          "t init",
          "tmp init",
          "p init",
          "t terminate Normal",
          "tmp terminate Crashed"
        ])
        assert.deepStrictEqual((yield* Supervisor.which(sup)).map((i) => i.running), [false, false, true])
      }))

    it.scoped("one_for_all: a temporary sibling stopped by a restart stays down; a transient one that ended starts again", () =>
      Effect.gen(function*() {
        const events: Array<string> = []
        const tmp = Supervisor.process("tmp", worker("tmp", events), undefined, { restart: "temporary" })
        const t = Supervisor.process("t", worker("t", events), undefined, { restart: "transient" })
        const p = Supervisor.process("p", worker("p", events), undefined)
        const sup = yield* Supervisor.start({ children: [tmp, t, p], strategy: "one_for_all" })
        yield* Process.exit(yield* currentRef(sup, t))
        yield* settle
        yield* Process.cast(yield* currentRef(sup, p), "crash")
        yield* settle
        assert.deepStrictEqual(events, [
          "tmp init",
          "t init",
          "p init",
          "t terminate Normal",
          "p terminate Crashed",
          "tmp terminate Shutdown",
          "t init",
          "p init"
        ])
        assert.deepStrictEqual((yield* Supervisor.which(sup)).map((i) => i.running), [false, true, true])
      }))

    it.scoped("group strategies: the failed child's schedule ending stops every child and fails await", () =>
      Effect.gen(function*() {
        const events: Array<string> = []
        const [a, b, c] = three(events)
        const sup = yield* Supervisor.start({
          children: [a, b, c],
          strategy: "rest_for_one",
          schedule: Supervisor.intensity(1, "10 seconds")
        })
        yield* Process.cast(yield* currentRef(sup, b), "crash")
        yield* settle
        yield* Process.cast(yield* currentRef(sup, b), "crash")
        const error = yield* Effect.flip(Supervisor.await(sup))
        assert.strictEqual(error.child, "b")
        assert.strictEqual(error.restarts, 1)
        assert.deepStrictEqual(events, [
          "a init",
          "b init",
          "c init",
          "b terminate Crashed",
          "c terminate Shutdown",
          "b init",
          "c init",
          "b terminate Crashed",
          "c terminate Shutdown",
          "a terminate Shutdown"
        ])
        assert.deepStrictEqual((yield* Supervisor.which(sup)).map((i) => i.running), [false, false, false])
      }))

    it.scoped("group strategies: restarts wait for the schedule's delay", () =>
      Effect.gen(function*() {
        const events: Array<string> = []
        const [a, b] = three(events)
        const sup = yield* Supervisor.start({ children: [a, b], strategy: "one_for_all", schedule: Schedule.spaced("1 second") })
        yield* Process.cast(yield* currentRef(sup, a), "crash")
        yield* settle
        yield* TestClock.adjust("999 millis")
        yield* settle
        assert.deepStrictEqual(events, ["a init", "b init", "a terminate Crashed"])
        yield* TestClock.adjust("1 millis")
        yield* settle
        assert.deepStrictEqual(events, ["a init", "b init", "a terminate Crashed", "b terminate Shutdown", "a init", "b init"])
      }))

    it.scoped("group strategies: start fails with SupervisorGaveUp when a child cannot even start once", () =>
      Effect.gen(function*() {
        const ok = Supervisor.task("ok", Effect.never)
        const never = Supervisor.task("never", Effect.fail("nope"), { schedule: Schedule.stop })
        const error = yield* Effect.flip(Supervisor.start({ children: [ok, never], strategy: "one_for_all" }))
        assert.strictEqual(error.child, "never")
        assert.strictEqual(Supervisor.finalFailure(error), "nope")
      }))

    it.effect("group strategies: closing the Scope stops children in reverse start order", () =>
      Effect.gen(function*() {
        const events: Array<string> = []
        const scope = yield* Scope.make()
        const [a, b, c] = three(events)
        const sup = yield* Supervisor.start({ children: [a, b, c], strategy: "one_for_all" }).pipe(Scope.extend(scope))
        yield* Process.cast(yield* currentRef(sup, a), "crash")
        yield* settle
        events.length = 0
        yield* Scope.close(scope, Exit.void)
        yield* Supervisor.await(sup)
        assert.deepStrictEqual(events, ["c terminate Shutdown", "b terminate Shutdown", "a terminate Shutdown"])
      }))

    for (const strategy of ["one_for_one", "rest_for_one"] as const) {
      it.effect(`${strategy}: started in an uninterruptible region (a layer), the supervisor still restarts and stops`, () =>
        Effect.gen(function*() {
          const events: Array<string> = []
          const scope = yield* Scope.make()
          const [a, b] = three(events)
          const sup = yield* Effect.uninterruptible(Scope.extend(Supervisor.start({ children: [a, b], strategy }), scope))
          yield* Process.cast(yield* currentRef(sup, b), "crash")
          yield* settle
          assert.strictEqual(yield* Supervisor.restarts(sup, b), 1)
          yield* Scope.close(scope, Exit.void)
          assert.deepStrictEqual(events, [
            "a init",
            "b init",
            "b terminate Crashed",
            "b init",
            "b terminate Shutdown",
            "a terminate Shutdown"
          ])
        }))
    }
  })
})
