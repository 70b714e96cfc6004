/**
 * OTP's `sys` for processes: system messages (get and replace the state, suspend, resume) travel through the
 * mailbox like calls, so they run between two messages, and a suspended process still handles them.
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Ref from "effect/Ref"
import { type CallError, type FromImpl, request } from "./callers.js"
import type { ProcessImpl } from "./engine.js"
import { SYSTEM } from "./mailbox.js"
import * as M from "./model.js"

/** A system request (the `request` of a SYSTEM envelope). */
export type SystemRequest =
  | { readonly _tag: "GetState" }
  | { readonly _tag: "ReplaceState"; readonly f: (state: unknown) => unknown }
  | { readonly _tag: "Suspend" }
  | { readonly _tag: "Resume" }

const GET_STATE: SystemRequest = { _tag: "GetState" }
const SUSPEND: SystemRequest = { _tag: "Suspend" }
const RESUME: SystemRequest = { _tag: "Resume" }
const done = Exit.void

/** Run one system request in the process fiber (the Ref holds the current state: the engine flushed it). */
export const handleSystem = (proc: ProcessImpl, from: FromImpl): Effect.Effect<void> => {
  const req = from.request as SystemRequest
  switch (req._tag) {
    case "GetState":
      return Effect.map(Ref.get(proc.stateRef), (state) => {
        from.settle(Exit.succeed(state))
      })
    case "ReplaceState":
      return Effect.flatMap(Ref.get(proc.stateRef), (state) => {
        let next: unknown
        try {
          next = req.f(state)
        } catch (error) {
          from.settle(Exit.fail(new M.ReplaceStateFailed({ process: proc.name, error })))
          return Effect.void
        }
        proc.state = next
        return Effect.map(Ref.set(proc.stateRef, next), () => {
          from.settle(Exit.succeed(next))
        })
      })
    case "Suspend":
      proc.suspended = true
      from.settle(done)
      return Effect.void
    case "Resume":
      proc.suspended = false
      from.settle(done)
      return Effect.void
  }
}

type SystemError = CallError | M.ReplaceStateFailed

export const getState = (proc: ProcessImpl, options: M.CallOptions | undefined): Effect.Effect<unknown, CallError> =>
  request(proc, SYSTEM, GET_STATE, options)

export const replaceState = (
  proc: ProcessImpl,
  f: (state: unknown) => unknown,
  options: M.CallOptions | undefined
): Effect.Effect<unknown, SystemError> =>
  request(proc, SYSTEM, { _tag: "ReplaceState", f }, options) as Effect.Effect<unknown, SystemError>

export const suspend = (proc: ProcessImpl, options: M.CallOptions | undefined): Effect.Effect<void, CallError> =>
  Effect.asVoid(request(proc, SYSTEM, SUSPEND, options))

export const resume = (proc: ProcessImpl, options: M.CallOptions | undefined): Effect.Effect<void, CallError> =>
  Effect.asVoid(request(proc, SYSTEM, RESUME, options))

export const info = (proc: ProcessImpl): M.ProcessInfo => ({
  id: proc.id,
  name: proc.name,
  status: proc.exitReason !== undefined
    ? "exited"
    : proc.suspended
    ? "suspended"
    : proc.mailbox.waiter !== undefined
    ? "waiting"
    : "running",
  mailbox: proc.mailbox.size(),
  handled: proc.handled
})
