// The Node socket.io 4.x reference of `make bench`: the same three handlers as
// benchmarks/bare_server.py (echo with ack, join a room, broadcast to a room), no checks.
// Usage: node benchmarks/node/server.js PORT
"use strict";
const http = require("http");
const { Server } = require("socket.io");

const port = Number(process.argv[2] || 5102);
const httpServer = http.createServer();
const io = new Server(httpServer, { transports: ["websocket", "polling"], serveClient: false });

io.on("connection", (socket) => {
  socket.on("echo", (data, ack) => ack && ack({ ok: true, data }));
  socket.on("join", (data, ack) => {
    socket.join(data.room);
    if (ack) ack({ ok: true });
  });
  socket.on("broadcast", (data, ack) => {
    io.to(data.room).emit("message", data.data);
    if (ack) ack({ ok: true });
  });
});

httpServer.listen(port, "127.0.0.1", () => {
  console.log(`node server ready on 127.0.0.1:${port} pid ${process.pid}`);
});
