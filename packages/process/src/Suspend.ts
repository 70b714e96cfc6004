/**
 * A fiber's wait for a callback, as cheap as Effect's runtime allows: the same `Async` step `Effect.async`
 * evaluates to, built once per wait instead of through a `Commit` on every wait.
 *
 * `Effect.async(register)` is a `Commit`: each time a fiber reaches it, one run-loop op builds a fresh `Async`
 * step with four allocations and a `Function.length` read (to decide whether to make an `AbortSignal`), then a
 * second op runs it. A process that waits once per message (a PB connection per request, a process per mailbox
 * wake-up, a caller per reply) pays that on every message. `Suspend.make` gives the `Async` step itself: one op,
 * one allocation (the fiber's own callback). See docs/benchmarks.md for what it saves the PB server and the RPC
 * client.
 *
 * What it keeps from `Effect.async`: `register` runs when the fiber reaches the step, each time it does, and gets
 * that fiber's callback; the first call of the callback resumes the fiber (later ones are ignored); the fiber can
 * be interrupted while it waits. What it leaves out: no canceler and no `AbortSignal`. A register that must undo
 * something on interruption uses `Effect.async`.
 *
 * The step is Effect's internal `Async` primitive, taken from `Effect.async` itself at load time. When an Effect
 * release changes that shape, `isNative` is false and `make` falls back to `Effect.async` (a test pins this to
 * the Effect version the project uses).
 *
 * @since 0.3.0
 */
import * as Effect from "effect/Effect"

/** What the runtime reads of an `Async` step (effect 3.x `EffectPrimitive`). */
interface AsyncStep {
  _op: string
  effect_instruction_i0: unknown
  effect_instruction_i1: unknown
}

type AsyncStepClass = new(op: string) => AsyncStep

/** `Effect.async`'s own step, and its class, when they have the shape this module relies on. */
const template = ((): { readonly step: AsyncStep; readonly make: AsyncStepClass } | undefined => {
  // A register of exactly one parameter and no canceler: `Effect.async` then evaluates to the bare step.
  const probe: unknown = Effect.async<never>((_resume) => {})
  const commit = (probe as { readonly commit?: unknown }).commit
  if (typeof commit !== "function") return undefined
  const step: unknown = commit.call(probe)
  if (typeof step !== "object" || step === null || !Effect.isEffect(step)) return undefined
  const fields = step as unknown as Partial<AsyncStep>
  if (fields._op !== "Async" || typeof fields.effect_instruction_i0 !== "function") return undefined
  if (!("effect_instruction_i1" in fields)) return undefined
  const make = (Object.getPrototypeOf(step) as { readonly constructor?: unknown } | null)?.constructor
  if (typeof make !== "function") return undefined
  const built = new (make as AsyncStepClass)("Async")
  const sameShape = Object.keys(built).join() === Object.keys(step).join()
  return sameShape && Effect.isEffect(built) ? { step: fields as AsyncStep, make: make as AsyncStepClass } : undefined
})()

/** True when `make` builds Effect's own `Async` step; false when it falls back to `Effect.async`. */
export const isNative: boolean = template !== undefined

/**
 * Suspends the fiber until `register`'s callback is called; resumes it with the Effect given (an `Exit`, such as
 * `Effect.void` or `Exit.succeed(a)`, resumes it without a further step). `register` runs every time a fiber
 * reaches the returned Effect, so one instance can be built once and reused for every wait.
 */
export const make = <A, E = never>(
  register: (resume: (effect: Effect.Effect<A, E>) => void) => void
): Effect.Effect<A, E> => {
  if (template === undefined) return Effect.async<A, E>((resume) => register(resume))
  const step = new template.make("Async")
  step.effect_instruction_i0 = register
  step.effect_instruction_i1 = template.step.effect_instruction_i1
  return step as unknown as Effect.Effect<A, E>
}
