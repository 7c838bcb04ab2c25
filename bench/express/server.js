// The log collector again, in Express and node-redis, for bench/run.py only.
//
// It does what solutions/module-1/log-collector/main.py does, so that the
// benchmark compares the frameworks and not two different services:
// the same rules for a log entry (422 naming the field), 413 over 64 KiB,
// one Redis client for the process, LPUSH onto logs_queue, 202 with the same
// entry, 503 when Redis fails, and the same GET /health.
//
// Configured like the solution, from the environment: REDIS_HOST, REDIS_PORT,
// QUEUE_NAME, and PORT for the HTTP port.

"use strict";

const crypto = require("node:crypto");
const express = require("express");
const { createClient } = require("redis");

const LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];
const FIELDS = { service_name: 100, level: null, message: 16384 };
const QUEUE = process.env.QUEUE_NAME || "logs_queue";
const QUEUE_DOWN = { detail: "Log queue unavailable, try again" };

const redis = createClient({
  socket: {
    host: process.env.REDIS_HOST || "localhost",
    port: Number(process.env.REDIS_PORT || 6379),
    connectTimeout: 2000,
  },
  // Fail a command at once while Redis is away, as the solution does,
  // instead of holding it until Redis comes back.
  disableOfflineQueue: true,
});
// Without a listener, a lost connection would crash the process.
redis.on("error", (err) => console.warn("Redis error:", err.message));

function problem(type, field, msg) {
  return { type, loc: field ? ["body", field] : ["body"], msg };
}

// Python counts characters by code point; String.length counts UTF-16 units.
function codePoints(text) {
  return [...text].length;
}

function validate(body) {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    return [problem("model_attributes_type", null, "Input should be an object")];
  }
  const errors = [];
  for (const [field, maxLength] of Object.entries(FIELDS)) {
    const value = body[field];
    if (value === undefined) {
      errors.push(problem("missing", field, "Field required"));
    } else if (typeof value !== "string") {
      errors.push(problem("string_type", field, "Input should be a valid string"));
    } else if (field === "level") {
      if (!LEVELS.includes(value)) {
        errors.push(problem("literal_error", field, `Input should be one of ${LEVELS}`));
      }
    } else if (value.trim() === "") {
      errors.push(problem("value_error", field, "must not be empty or only whitespace"));
    } else if (codePoints(value) > maxLength) {
      errors.push(
        problem("string_too_long", field, `String should have at most ${maxLength} characters`),
      );
    }
  }
  for (const field of Object.keys(body)) {
    if (!(field in FIELDS)) {
      errors.push(problem("extra_forbidden", field, "Extra inputs are not permitted"));
    }
  }
  return errors;
}

const app = express();
app.disable("x-powered-by");
// The solution sends no ETag; hashing every answer would be work it does not do.
app.set("etag", false);
app.use(express.json({ limit: "64kb", strict: false }));

app.post("/logs", async (req, res) => {
  // No JSON content type: express.json leaves the body unset.
  const errors = req.body === undefined
    ? [problem("model_attributes_type", null, "Input should be a JSON object")]
    : validate(req.body);
  if (errors.length) {
    return res.status(422).json({ detail: errors });
  }
  const { service_name, level, message } = req.body;
  const entry = {
    service_name,
    level,
    message,
    id: crypto.randomUUID().replaceAll("-", ""),
    timestamp: new Date().toISOString(),
  };
  try {
    await redis.lPush(QUEUE, JSON.stringify(entry));
  } catch (err) {
    console.warn(`Could not push to ${QUEUE}: ${err.message}`);
    return res.status(503).json(QUEUE_DOWN);
  }
  return res.status(202).json(entry);
});

app.get("/health", async (req, res) => {
  try {
    await redis.ping();
  } catch {
    return res.status(503).json({ status: "unavailable", redis: "down" });
  }
  return res.json({ status: "ok", redis: "up" });
});

// body-parser's errors, answered as the solution answers the same bodies.
app.use((err, req, res, next) => {
  if (err.type === "entity.too.large") {
    return res.status(413).json({ detail: "Content Too Large" });
  }
  if (err.type === "entity.parse.failed") {
    return res.status(422).json({ detail: [problem("json_invalid", null, "JSON decode error")] });
  }
  if (err.status >= 400 && err.status < 500) {
    return res.status(400).json({ detail: "There was an error parsing the body" });
  }
  return next(err);
});

async function main() {
  try {
    await redis.connect();
    console.log(`Connected to Redis at ${redis.options.socket.host}:${redis.options.socket.port}`);
  } catch (err) {
    // Start anyway, as the solution does: requests answer 503 until Redis is back.
    console.warn(`Redis is not reachable yet: ${err.message}`);
  }
  const port = Number(process.env.PORT || 8000);
  const server = app.listen(port, "127.0.0.1", () => console.log(`Listening on ${port}`));
  // Finish what is in flight on SIGTERM, then close Redis, like uvicorn does.
  process.on("SIGTERM", () => server.close(() => redis.close().finally(() => process.exit(0))));
}

main();
