// Compiled by `npm run typecheck` (never run): the event map generated from the AsyncAPI
// document types `call` and `on`; each @ts-expect-error line must stay an error.
import { createClient, RealtimeError, type Message, type SendReply } from "../src/index.js";

export async function typed(): Promise<void> {
  const rt = createClient("http://127.0.0.1:5000", { getToken: async () => "token" });
  const sent: SendReply = await rt.call("chat:send",
    { room_id: "r1", text: "hi", client_msg_id: "c1" });
  void sent.seq;
  rt.on("chat:message", (m: Message) => void m.text);
  const me = await rt.call("whoami");
  void me.user_id;
  rt.on("notifications:new", (n) => void n.id);
  rt.on("resync", (e) => void e.reason);
  rt.onConnect(({ reconnect, resync }) => void (reconnect && resync));
  const sub = rt.subscribe("chat:general", { onPublication: (p) => void p.offset });
  const reply = await sub.ready;
  void reply.recovered;
  try {
    // @ts-expect-error: `text` is required by chat:send
    await rt.call("chat:send", { room_id: "r1", client_msg_id: "c2" });
    // @ts-expect-error: no such client event
    await rt.call("chat:sned", {});
    // @ts-expect-error: a number is not a room id
    await rt.call("chat:join", { room_id: 1 });
    // @ts-expect-error: no such server event
    rt.on("notifications:neww", () => {});
  } catch (err) {
    if (err instanceof RealtimeError) void [err.code, err.details, err.retryAfter];
  }
}
