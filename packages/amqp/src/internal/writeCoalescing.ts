/**
 * How an AMQP connection's frames reach its socket: hooks on amqplib's multiplexer that write the frames of one
 * event-loop turn in one `writev`, and a lone frame before the loop turns. Only amqplib's internals change, and
 * only when they are the expected ones.
 */
import type * as Amqp from "amqplib"

/** A writable stream that can hold its writes and flush them as one (a `net.Socket`). */
interface Corkable {
  cork(): void
  uncork(): void
}

const isCorkable = (stream: unknown): stream is Corkable =>
  typeof stream === "object" && stream !== null &&
  "cork" in stream && typeof stream.cork === "function" &&
  "uncork" in stream && typeof stream.uncork === "function"

/** Frames waiting in the channels' queues of amqplib's multiplexer (2 when unknown: cork to be safe). */
const MUX_QUEUES = ["newStreams", "oldStreams"] as const
const queuedFrames = (muxer: object): number => {
  let frames = 0
  for (const field of MUX_QUEUES) {
    const streams: unknown = Reflect.get(muxer, field)
    if (!Array.isArray(streams)) return 2
    for (const queue of streams as ReadonlyArray<unknown>) {
      const length: unknown = typeof queue === "object" && queue !== null
        ? Reflect.get(queue, "readableLength")
        : undefined
      if (typeof length !== "number") return 2
      frames += length
      if (frames > 1) return frames
    }
  }
  return frames
}

/**
 * Makes every frame amqplib's multiplexer writes in one pass leave in one socket write. amqplib queues frames per
 * channel and a scheduled pass (`Mux._readIncoming`, once per event-loop turn) writes them to the socket one
 * `write` each: each a syscall and a TCP segment. Corking the socket around the pass turns the frames of all
 * publishes issued in the same turn (concurrent RPC callers resumed by one batch of replies) into one `writev`.
 * A pass with at most one frame queued (one request at a time) is left uncorked. Nothing changes on an amqplib
 * whose internals differ.
 */
export const coalesceWrites = (model: Amqp.ChannelModel): void => {
  const connection: object = model.connection
  if (!("muxer" in connection) || !("stream" in connection)) return
  const { muxer, stream } = connection
  if (typeof muxer !== "object" || muxer === null || !isCorkable(stream)) return
  if (!("_readIncoming" in muxer) || typeof muxer._readIncoming !== "function") return
  const readIncoming: unknown = muxer._readIncoming
  if (typeof readIncoming !== "function") return
  const pass = () => {
    if (queuedFrames(muxer) <= 1) return Reflect.apply(readIncoming, muxer, [])
    stream.cork()
    try {
      Reflect.apply(readIncoming, muxer, [])
    } finally {
      stream.uncork()
    }
  }
  Reflect.set(muxer, "_readIncoming", pass)
  // A lone frame (one request at a time) leaves at the end of the current tick instead of in amqplib's
  // `setImmediate`: one event-loop phase and one immediate less between a reply and the next request. Several
  // frames still wait for the immediate, so concurrent requests keep leaving in one write.
  if (!("_scheduleRead" in muxer) || typeof Reflect.get(muxer, "scheduledRead") !== "boolean") return
  const scheduledPass = () => {
    Reflect.set(muxer, "scheduledRead", false)
    pass()
  }
  Reflect.set(muxer, "_scheduleRead", () => {
    if (Reflect.get(muxer, "scheduledRead") === true) return
    Reflect.set(muxer, "scheduledRead", true)
    process.nextTick(() => {
      if (queuedFrames(muxer) <= 1) scheduledPass()
      else setImmediate(scheduledPass)
    })
  })
}
