/**
 * The basic service (riak_api's `riak_api_basic_pb_service`): ping (1 -> 2) and server info (7 -> 8, with `node`
 * and `server_version` both set). The reply codes 2 and 8 sent as requests get riak's `Error processing incoming
 * message` and the connection is closed, as riak's crash on them does.
 *
 * @since 0.1.0
 */
import * as NodeOs from "node:os"
import * as PbCodec from "./PbCodec.js"
import * as PbService from "./PbService.js"
import * as RiakPb from "./RiakPb.js"
import type { Registration } from "./ServiceRegistry.js"
import { registration } from "./ServiceRegistry.js"

/**
 * The messages of the basic service.
 *
 * @since 0.1.0
 * @category models
 */
export interface Messages {
  readonly RpbPingReq: {}
  readonly RpbPingResp: {}
  readonly RpbGetServerInfoReq: {}
  readonly RpbGetServerInfoResp: RiakPb.RpbGetServerInfoResp
}

/**
 * @since 0.1.0
 * @category models
 */
export interface BasicServiceOptions {
  /** Reported as `node` (riak: the Erlang node name). Default `warren@<hostname>`. */
  readonly node?: string | undefined
  /** Reported as `server_version`. Default this package's version. */
  readonly serverVersion?: string | undefined
}

/**
 * The version reported by default.
 *
 * @since 0.1.0
 * @category constants
 */
export const version = "0.1.0"

/**
 * Builds the basic service.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: BasicServiceOptions = {}): PbService.PbService => {
  const codec = PbCodec.make<Messages>(RiakPb.schema(), {
    RpbPingReq: PbCodec.codeOnly(RiakPb.MessageCode.RpbPingReq),
    RpbPingResp: PbCodec.codeOnly(RiakPb.MessageCode.RpbPingResp),
    RpbGetServerInfoReq: PbCodec.codeOnly(RiakPb.MessageCode.RpbGetServerInfoReq),
    RpbGetServerInfoResp: RiakPb.MessageCode.RpbGetServerInfoResp
  })
  const encoder = new TextEncoder()
  const info = codec.message("RpbGetServerInfoResp", {
    node: encoder.encode(options.node ?? `warren@${NodeOs.hostname()}`),
    server_version: encoder.encode(options.serverVersion ?? version)
  })
  const pong = codec.message("RpbPingResp", {})
  // The service keeps no state, so its two answers are built once (a ping allocates nothing).
  const pongReply = PbService.reply(pong, undefined)
  const infoReply = PbService.reply(info, undefined)
  return PbService.make({
    name: "riak_api_basic_pb_service",
    init: () => undefined,
    decode: codec.decode,
    encode: codec.encode,
    process: (message, state) => {
      switch (message._tag) {
        case "RpbPingReq":
          return pongReply
        case "RpbGetServerInfoReq":
          return infoReply
        default:
          // RpbPingResp (2) or RpbGetServerInfoResp (8) sent as a request: riak's process/2 has no clause for it.
          return PbService.unexpected(state)
      }
    }
  })
}

/**
 * The code ranges of the basic service: 1..2 and 7..8.
 *
 * @since 0.1.0
 * @category constructors
 */
export const registrations = (service: PbService.PbService): ReadonlyArray<Registration> => [
  registration(service, RiakPb.MessageCode.RpbPingReq, RiakPb.MessageCode.RpbPingResp),
  registration(service, RiakPb.MessageCode.RpbGetServerInfoReq, RiakPb.MessageCode.RpbGetServerInfoResp)
]
