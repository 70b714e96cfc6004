/**
 * Reconnect policies for `AmqpConnection`, `RpcClient` and `RpcServer`: the ones of `@warren/process/Reconnect`
 * (one mechanism for every reconnect loop), typed over the `AmqpError` of each failed attempt.
 *
 * `AmqpConnection`'s `reconnect` paces attempts to reach the broker. A client's `reconnect` / a server's `reopen`
 * paces attempts to reopen a channel that failed on a live connection (a declaration refused, a consumer
 * cancelled); while the connection itself is down they do not run: the channel owner waits for the connection.
 */
import { Reconnect } from "@warren/process"
import type { AmqpError } from "./internal/amqpError.js"

/** A reconnect policy: a Schedule over the errors of failed attempts. Its end means "give up". */
export type Policy = Reconnect.Policy<AmqpError>

/** Exponential backoff from 100 ms, doubling, jittered 80-120 %, capped at 2 s (all adjustable), forever. */
export const exponential: typeof Reconnect.exponential = Reconnect.exponential

/** The default: exponential from 100 ms, jittered, capped at 2 s, forever (serves again within seconds of a return). */
export const defaultPolicy: Policy = Reconnect.defaultPolicy

/** Hare's list backoff: `delays[n]` before retry n, then the last delay forever. */
export const fromDelays: typeof Reconnect.fromDelays = Reconnect.fromDelays

/** Hare's default connection backoff: 0, 10, 100, 1000, then 5000 ms forever. */
export const hareDefault: Policy = Reconnect.hareDefault

/** At most `retries` retries of `policy`, then give up. */
export const limit = (policy: Policy, retries: number): Policy => Reconnect.limit(policy, retries)
