/**
 * Topology: the exchange, queue and binding declarations a channel owner makes on every new channel, and the one
 * exchange config the RPC client and server share. Each declaration is one AMQP method, awaited before the next;
 * a refusal fails with a `SetupFailure` naming the method.
 */
import type * as Amqp from "amqplib"
import type * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { type SetupFailure, setupStep } from "./channelOwner.js"

const opt = <S extends Schema.Schema.All>(schema: S) => Schema.optionalWith(schema, { exact: true })

/** Declaration arguments of an exchange (`exchange.declare`). */
export const ExchangeOptions = Schema.Struct({
  durable: opt(Schema.Boolean),
  autoDelete: opt(Schema.Boolean),
  internal: opt(Schema.Boolean),
  alternateExchange: opt(Schema.String),
  arguments: opt(Schema.Record({ key: Schema.String, value: Schema.Unknown }))
})

/** Declaration arguments of an exchange. */
export type ExchangeOptions = Schema.Schema.Type<typeof ExchangeOptions>

/**
 * An exchange, as the RPC client (its request exchange) and the RPC server (the exchange its queue is bound to)
 * both take it. An absent name or `""` is the default exchange: nothing is declared.
 */
export const ExchangeConfig = Schema.Struct({
  /** Exchange name; `""` (the default) is the default exchange. */
  name: opt(Schema.String),
  /** direct (default), fanout, topic, headers, or a plugin type. */
  type: opt(Schema.NonEmptyString),
  /** Declaration arguments, used on every (re)declaration. */
  options: opt(ExchangeOptions),
  /**
   * Only check that the exchange exists (passive declare) instead of declaring it: uses an exchange another
   * program declared, whatever its arguments. A missing exchange fails the setup.
   */
  passive: opt(Schema.Boolean)
})

/** An exchange config (see the `ExchangeConfig` schema). */
export interface ExchangeConfig {
  readonly name?: string | undefined
  readonly type?: string | undefined
  readonly options?: ExchangeOptions | undefined
  readonly passive?: boolean | undefined
}

/** An exchange config after defaults. */
export interface Exchange {
  /** `""` for the default exchange. */
  readonly name: string
  readonly type: string
  readonly options: ExchangeOptions
  readonly passive: boolean
}

/** Defaults: the default exchange, type direct, no arguments, not passive. */
export const resolveExchange = (config: ExchangeConfig | string | undefined): Exchange => {
  const given = typeof config === "string" ? { name: config } : config ?? {}
  return {
    name: given.name ?? "",
    type: given.type ?? "direct",
    options: given.options ?? {},
    passive: given.passive ?? false
  }
}

const assertOptions = (given: ExchangeOptions): Amqp.Options.AssertExchange => {
  const options: Amqp.Options.AssertExchange = {}
  if (given.durable !== undefined) options.durable = given.durable
  if (given.autoDelete !== undefined) options.autoDelete = given.autoDelete
  if (given.internal !== undefined) options.internal = given.internal
  if (given.alternateExchange !== undefined) options.alternateExchange = given.alternateExchange
  if (given.arguments !== undefined) options.arguments = given.arguments
  return options
}

/** Declares (or, passive, checks) a named exchange. */
export const declareExchange = (channel: Amqp.Channel, exchange: Exchange): Effect.Effect<void, SetupFailure> =>
  exchange.passive
    ? setupStep(`exchange.declare ${exchange.name} (passive)`, () => channel.checkExchange(exchange.name).then(() => undefined))
    : setupStep(
      `exchange.declare ${exchange.name}`,
      () => channel.assertExchange(exchange.name, exchange.type, assertOptions(exchange.options)).then(() => undefined)
    )

/** Declares a server-named, exclusive, auto-delete queue (an RPC client's reply queue); returns its name. */
export const declareReplyQueue = (channel: Amqp.Channel): Effect.Effect<string, SetupFailure> =>
  setupStep("queue.declare (reply queue)", () =>
    channel.assertQueue("", { exclusive: true, autoDelete: true }).then((ok) => ok.queue))

/** Declares a queue (an empty name asks the broker for one); returns its name. */
export const declareQueue = (
  channel: Amqp.Channel,
  name: string,
  options: Amqp.Options.AssertQueue
): Effect.Effect<string, SetupFailure> =>
  setupStep(`queue.declare ${name}`, () => channel.assertQueue(name, options).then((ok) => ok.queue))

/** Binds `queue` to `exchange` with `routingKey`. */
export const bindQueue = (
  channel: Amqp.Channel,
  queue: string,
  exchange: string,
  routingKey: string
): Effect.Effect<void, SetupFailure> =>
  setupStep(`queue.bind ${queue} ${exchange} ${routingKey}`, () =>
    channel.bindQueue(queue, exchange, routingKey).then(() => undefined))
