/** The RPC server's channel: the link its parts share and the channel owner spec (declare, consume, reopen). */
import type * as Amqp from "amqplib"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { AmqpError } from "./amqpError.js"
import * as ChannelOwner from "./channelOwner.js"
import * as Topology from "./topology.js"
import { type AmqpConnectionShape, isChannelOpen } from "./connection.js"
import { type Resolved } from "./rpcServerConfig.js"
import { type ChannelMeta, type ReadyMeta, type ServerStatus } from "./rpcServerModel.js"
import { type Counters } from "./rpcServerMetrics.js"

export interface Active {
  readonly channel: Amqp.Channel
  readonly generation: number
  readonly queue: string
  readonly exchange: string
  consumerTag: string
}

export interface Delivery {
  readonly message: Amqp.ConsumeMessage
  readonly active: Active
}

export interface Sink {
  readonly delivery: (delivery: Delivery) => void
  readonly connected: (meta: ChannelMeta) => void
  readonly ready: (meta: ReadyMeta) => void
  /** The channel owner gave up (connection closed for good, reopen policy ended). */
  readonly gaveUp: (error: AmqpError) => void
}

/** What the server's parts share: config, status, the current channel, counters. */
export class Link {
  current: Active | undefined = undefined
  generation = 0
  constructor(
    readonly config: Resolved,
    readonly status: SubscriptionRef.SubscriptionRef<ServerStatus>,
    readonly counters: Counters
  ) {}

  /** The current serving channel; waits while there is none; fails once the server stopped. */
  get awaitChannel(): Effect.Effect<Amqp.Channel, AmqpError> {
    return this.status.changes.pipe(
      Stream.filterMap((status): Option.Option<Either.Either<Amqp.Channel, AmqpError>> => {
        if (status._tag === "Stopped") {
          return Option.some(Either.left(new AmqpError({ reason: "Closed", message: `RPC server ${this.config.name} stopped` })))
        }
        const current = this.current
        if (status._tag === "Ready" && current !== undefined && isChannelOpen(current.channel)) {
          return Option.some(Either.right(current.channel))
        }
        return Option.none()
      }),
      Stream.runHead,
      Effect.flatMap(Option.match({
        onNone: () => Effect.fail(new AmqpError({ reason: "Closed", message: `RPC server ${this.config.name} stopped` })),
        onSome: (result) => result
      }))
    )
  }
}

/**
 * Keeps a consuming channel with the channel owner: declare (qos, exchange, queue, bindings), consume, reopen
 * per the `reopen` policy. Deliveries and the connected / ready / gave-up events go to `sink`.
 */
export const session = (
  link: Link,
  connection: AmqpConnectionShape,
  sink: Sink
): Effect.Effect<void> => {
  const config = link.config
  const spec: ChannelOwner.Spec<ChannelMeta, ReadyMeta> = {
    name: `RPC server ${config.name}`,
    confirm: false,
    policy: config.reopen,
    declare: (channel) =>
      Effect.gen(function*() {
        link.generation += 1
        const generation = link.generation
        // One synchronous AMQP method at a time per channel: every declaration is awaited before the next.
        if (!config.noAck && config.prefetch > 0) {
          yield* ChannelOwner.setupStep("basic.qos", () => channel.prefetch(config.prefetch))
        }
        const exchange = config.exchange
        if (exchange !== undefined) yield* Topology.declareExchange(channel, exchange)
        const queue = yield* Topology.declareQueue(channel, config.queue.name, config.queue.options)
        if (exchange !== undefined) {
          for (const key of config.bindings) yield* Topology.bindQueue(channel, queue, exchange.name, key)
        }
        return { queue, exchange: exchange?.name ?? "", generation }
      }),
    consume: (channel, meta, cancelled) =>
      Effect.gen(function*() {
        const active: Active = { channel, generation: meta.generation, queue: meta.queue, exchange: meta.exchange, consumerTag: "" }
        const consumeOptions: Amqp.Options.Consume = { noAck: config.noAck }
        if (config.consumerTag !== undefined) consumeOptions.consumerTag = config.consumerTag
        const consumer = yield* ChannelOwner.setupStep(`basic.consume ${meta.queue}`, () =>
          channel.consume(meta.queue, (message) => {
            if (message === null) {
              cancelled(new AmqpError({ reason: "ChannelLost", message: `the broker cancelled the consumer on ${meta.queue}` }))
            } else {
              sink.delivery({ message, active })
            }
          }, consumeOptions))
        active.consumerTag = consumer.consumerTag
        link.current = active
        yield* Effect.logDebug(`RPC server ${config.name} consuming ${meta.queue}`)
        return { ...meta, consumerTag: consumer.consumerTag }
      }),
    status: link.status,
    events: {
      connected: (_channel, meta) => sink.connected(meta),
      ready: (_channel, _meta, ready) => sink.ready(ready),
      lost: () => {
        link.current = undefined
      },
      gaveUp: (error) => {
        link.current = undefined
        sink.gaveUp(error)
      }
    }
  }
  return ChannelOwner.run(connection, spec).pipe(
    Effect.ensuring(Effect.sync(() => {
      link.current = undefined
    })),
    Effect.annotateLogs("rpc.server", config.name)
  )
}
