// dihya-realtime-client: see docs/js-client.md.
export {
  createClient, RealtimeClient, Subscription,
  type CallOptions, type ClientOptions, type ConnectInfo, type ConnectionState, type EventMap,
  type Publication, type RecoveryFailed, type SubscribeOptions, type TokenReason,
  type TokenSource,
} from "./client.js";
export { DISCONNECTED, RealtimeError, TIMEOUT, type ErrorBody } from "./errors.js";
export { ChannelStream, type Position } from "./stream.js";
export type * from "./generated/events.js";
