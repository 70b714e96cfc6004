import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, Schedule, Scope, TestClock } from "effect"
import { DynamicSupervisor, Supervisor } from "@warren/process"

/** Run the forked fibers until they are all suspended. */
const settle = Effect.repeatN(Effect.yieldNow(), 20)

type Command = "hold" | "succeed" | "fail"

/** A child body that logs its life in `events` and does what its arg says (hold: wait until interrupted). */
const body = (events: Array<string>) => (arg: { readonly name: string; readonly command: Command }) =>
  Effect.gen(function*() {
    events.push(`${arg.name} start`)
    yield* Effect.addFinalizer((exit) =>
      Effect.sync(() => events.push(`${arg.name} closed ${Exit.isInterrupted(exit) ? "interrupted" : exit._tag}`))
    )
    switch (arg.command) {
      case "hold":
        return yield* Effect.never
      case "succeed":
        return "done"
      case "fail":
        return yield* Effect.fail(`${arg.name} failed`)
    }
  })

const hold = (name: string) => ({ name, command: "hold" as const })

describe("DynamicSupervisor", () => {
  it.scoped("starts children on demand and lists and counts them", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      const sup = yield* DynamicSupervisor.make({ run: body(events) })
      assert.deepStrictEqual(yield* DynamicSupervisor.count(sup), { active: 0, specs: 1, workers: 0 })
      const a = yield* DynamicSupervisor.startChild(sup, hold("a"))
      const b = yield* DynamicSupervisor.startChild(sup, hold("b"))
      yield* settle
      assert.deepStrictEqual(events, ["a start", "b start"])
      assert.notStrictEqual(a.id, b.id)
      assert.deepStrictEqual((yield* DynamicSupervisor.which(sup)).map((c) => c.id), [a.id, b.id])
      assert.deepStrictEqual(yield* DynamicSupervisor.count(sup), { active: 2, specs: 1, workers: 2 })
    }))

  it.scoped("a temporary child leaves the table when it ends, normally or not, and is not restarted", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      const sup = yield* DynamicSupervisor.make({ run: body(events) })
      yield* DynamicSupervisor.startChild(sup, { name: "ok", command: "succeed" })
      yield* DynamicSupervisor.startChild(sup, { name: "bad", command: "fail" })
      const held = yield* DynamicSupervisor.startChild(sup, hold("held"))
      yield* settle
      assert.sameMembers([...events], ["ok start", "bad start", "held start", "ok closed Success", "bad closed Failure"])
      assert.deepStrictEqual((yield* DynamicSupervisor.which(sup)).map((c) => c.id), [held.id])
      assert.deepStrictEqual(yield* DynamicSupervisor.count(sup), { active: 1, specs: 1, workers: 1 })
    }))

  it.scoped("maxChildren: a start beyond the limit fails with MaxChildrenReached, and works again once a child left", () =>
    Effect.gen(function*() {
      const sup = yield* DynamicSupervisor.make({ run: body([]) }, { maxChildren: 2 })
      const a = yield* DynamicSupervisor.startChild(sup, hold("a"))
      yield* DynamicSupervisor.startChild(sup, hold("b"))
      const refused = yield* Effect.flip(DynamicSupervisor.startChild(sup, hold("c")))
      assert.instanceOf(refused, DynamicSupervisor.MaxChildrenReached)
      assert.strictEqual(refused.maxChildren, 2)
      assert.strictEqual((yield* DynamicSupervisor.count(sup)).workers, 2)
      yield* DynamicSupervisor.terminateChild(sup, a)
      const c = yield* DynamicSupervisor.startChild(sup, hold("c"))
      assert.deepStrictEqual((yield* DynamicSupervisor.which(sup)).length, 2)
      assert.isTrue((yield* DynamicSupervisor.which(sup)).some((child) => child.id === c.id))
    }))

  it.scoped("terminateChild closes the child's Scope, waits for it, and never restarts it (even permanent)", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      const sup = yield* DynamicSupervisor.make({ run: body(events), restart: "permanent" })
      const a = yield* DynamicSupervisor.startChild(sup, hold("a"))
      yield* settle
      yield* DynamicSupervisor.terminateChild(sup, a)
      assert.deepStrictEqual(events, ["a start", "a closed interrupted"])
      yield* settle
      assert.deepStrictEqual(yield* DynamicSupervisor.which(sup), [])
      assert.deepStrictEqual(events, ["a start", "a closed interrupted"])
      // terminating a child that already left does nothing
      yield* DynamicSupervisor.terminateChild(sup, a)
    }))

  it.scoped("transient: restarted with the same arg after a failure, not after a normal end", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      let runs = 0
      const sup = yield* DynamicSupervisor.make({
        restart: "transient",
        run: (name: string) =>
          Effect.suspend(() => {
            runs++
            events.push(`${name} run ${runs}`)
            return runs < 3 ? Effect.fail("boom") : Effect.void
          })
      }, { intensity: Schedule.forever })
      const child = yield* DynamicSupervisor.startChild(sup, "t")
      yield* settle
      assert.deepStrictEqual(events, ["t run 1", "t run 2", "t run 3"])
      assert.isFalse((yield* DynamicSupervisor.which(sup)).some((c) => c.id === child.id))
    }))

  it.scoped("permanent: restarted after a normal end too, keeping its id, after the intensity's delay", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      const sup = yield* DynamicSupervisor.make(
        { restart: "permanent", run: (name: string) => Effect.sync(() => events.push(name)) },
        { intensity: Schedule.spaced("1 second") }
      )
      const child = yield* DynamicSupervisor.startChild(sup, "p")
      yield* settle
      assert.deepStrictEqual(events, ["p"])
      // waiting for its restart: still in the table, not active
      assert.deepStrictEqual(yield* DynamicSupervisor.count(sup), { active: 0, specs: 1, workers: 1 })
      yield* TestClock.adjust("1 second")
      yield* settle
      assert.deepStrictEqual(events, ["p", "p"])
      yield* TestClock.adjust("1 second")
      yield* settle
      assert.deepStrictEqual(events, ["p", "p", "p"])
      assert.deepStrictEqual((yield* DynamicSupervisor.which(sup)).map((c) => c.id), [child.id])
    }))

  it.scoped("exceeding the intensity stops every child (finalizers run) and fails await with SupervisorGaveUp", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      const sup = yield* DynamicSupervisor.make(
        { run: body(events), restart: "permanent" },
        { intensity: Supervisor.intensity(2, "5 seconds"), name: "conns" }
      )
      yield* DynamicSupervisor.startChild(sup, hold("a"))
      yield* settle
      yield* DynamicSupervisor.startChild(sup, { name: "f", command: "fail" })
      const waiter = yield* Effect.fork(DynamicSupervisor.await(sup))
      yield* settle
      const gaveUp = yield* Effect.flip(Fiber.join(waiter))
      assert.instanceOf(gaveUp, Supervisor.SupervisorGaveUp)
      assert.strictEqual(gaveUp.restarts, 2)
      assert.deepStrictEqual(Cause.failures(gaveUp.cause).pipe((c) => Array.from(c)), ["f failed"])
      assert.deepStrictEqual(events, [
        "a start",
        "f start",
        "f closed Failure",
        "f start",
        "f closed Failure",
        "f start",
        "f closed Failure",
        "a closed interrupted"
      ])
      assert.deepStrictEqual(yield* DynamicSupervisor.which(sup), [])
      const late = yield* Effect.exit(DynamicSupervisor.startChild(sup, hold("late")))
      assert.isTrue(Exit.isFailure(late) && Cause.isDie(late.cause))
    }))

  it.effect("closing the supervisor's Scope interrupts every child, runs their finalizers and waits for them", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      const release = yield* Deferred.make<void>()
      const scope = yield* Scope.make()
      const sup = yield* DynamicSupervisor.make({
        run: (name: string) =>
          Effect.gen(function*() {
            yield* Effect.addFinalizer(() =>
              Effect.zipRight(Deferred.await(release), Effect.sync(() => events.push(`${name} released`)))
            )
            return yield* Effect.never
          })
      }).pipe(Scope.extend(scope))
      yield* DynamicSupervisor.startChild(sup, "a")
      yield* DynamicSupervisor.startChild(sup, "b")
      yield* settle
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      const waiter = yield* Effect.fork(DynamicSupervisor.await(sup))
      yield* settle
      // the close waits for the children's finalizers
      assert.isNull(closing.unsafePoll())
      assert.isNull(waiter.unsafePoll())
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(closing)
      yield* Fiber.join(waiter)
      assert.sameMembers(events, ["a released", "b released"])
      assert.deepStrictEqual(yield* DynamicSupervisor.count(sup), { active: 0, specs: 1, workers: 0 })
      const late = yield* Effect.exit(DynamicSupervisor.startChild(sup, "late"))
      assert.isTrue(Exit.isFailure(late) && Cause.isDie(late.cause))
    }))

  it.scoped("a child started from another fiber outlives that fiber", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      const sup = yield* DynamicSupervisor.make({ run: body(events) })
      const handler = yield* Effect.fork(DynamicSupervisor.startChild(sup, hold("conn")))
      const child = yield* Fiber.join(handler)
      // active as soon as startChild returned
      assert.deepStrictEqual(yield* DynamicSupervisor.count(sup), { active: 1, specs: 1, workers: 1 })
      yield* settle
      assert.deepStrictEqual(events, ["conn start"])
      assert.deepStrictEqual((yield* DynamicSupervisor.which(sup)).map((c) => c.id), [child.id])
      assert.deepStrictEqual(yield* DynamicSupervisor.count(sup), { active: 1, specs: 1, workers: 1 })
    }))

  it.effect("children get the requirements of make's context", () =>
    Effect.gen(function*() {
      const seen = yield* Deferred.make<string>()
      class Greeting extends Effect.Tag("test/Greeting")<Greeting, { readonly text: string }>() {}
      yield* Effect.scoped(Effect.gen(function*() {
        const sup = yield* DynamicSupervisor.make({
          run: (name: string) => Effect.flatMap(Greeting, (g) => Deferred.succeed(seen, `${g.text} ${name}`))
        }).pipe(Effect.provideService(Greeting, { text: "hello" }))
        yield* DynamicSupervisor.startChild(sup, "x")
        assert.strictEqual(yield* Deferred.await(seen), "hello x")
      }))
    }))

  it.effect("made in an uninterruptible region (a layer, an acquire), its children can still be terminated", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      const scope = yield* Scope.make()
      const sup = yield* Effect.uninterruptible(Scope.extend(DynamicSupervisor.make({ run: body(events) }), scope))
      const a = yield* DynamicSupervisor.startChild(sup, hold("a"))
      yield* DynamicSupervisor.startChild(sup, hold("b"))
      yield* settle
      yield* DynamicSupervisor.terminateChild(sup, a)
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(events, ["a start", "b start", "a closed interrupted", "b closed interrupted"])
    }))
})
