// A free TCP port for a test's process group (TCPStore master), asked of the OS.
import { createServer } from "node:net";

/** A port on 127.0.0.1 that nothing listens on now (the OS picks it; it is released at once). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}
