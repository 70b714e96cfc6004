/**
 * @warren/pb: Riak-compatible Protocol Buffers services on Effect (a port of riak_api).
 *
 * @since 0.1.0
 */

/** The service behaviour (riak_api_pb_service). @since 0.1.0 */
export * as PbService from "./PbService.js"

/** decode/encode from protobufjs types and a code table. @since 0.1.0 */
export * as PbCodec from "./PbCodec.js"

/** Riak PB message codes, shapes and schema. @since 0.1.0 */
export * as RiakPb from "./RiakPb.js"
