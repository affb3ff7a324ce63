// Rendering scenes to PNG with @napi-rs/canvas (Skia, anti-aliased). Materials look different:
// rubber is flat and matte, metal has a light-to-dark gradient and a specular spot, wood has
// darker grain stripes, glass is translucent with a bright rim and a highlight streak. Colours
// stay recognisable under every material. Output depends only on the scene and the size, so
// any thread renders the same bytes.
import { createCanvas, type Canvas, type SKRSContext2D } from "@napi-rs/canvas";
import type { Color, Scene, SceneObject, Shape } from "./scene.js";
import { OUTLINES } from "./shapes.js";

export const BACKGROUND = "#8c8c8c";
/** The missing corner of a jigsaw image. */
export const MISSING = "#000000";

export const COLOR_RGB: { readonly [C in Color]: readonly [number, number, number] } = {
  red: [214, 40, 40],
  orange: [247, 127, 0],
  yellow: [252, 208, 0],
  green: [42, 157, 63],
  cyan: [34, 195, 214],
  blue: [36, 86, 214],
  purple: [131, 56, 236],
  pink: [255, 95, 162],
};

type Rgb = readonly [number, number, number];
const css = ([r, g, b]: Rgb, a = 1) => (a === 1 ? `rgb(${r},${g},${b})` : `rgba(${r},${g},${b},${a})`);
/** Mixes towards white (t > 0) or black (t < 0). */
const tint = ([r, g, b]: Rgb, t: number): Rgb => {
  const target = t > 0 ? 255 : 0, k = Math.abs(t);
  return [Math.round(r + (target - r) * k), Math.round(g + (target - g) * k), Math.round(b + (target - b) * k)];
};

/** Traces `shape` centred on (cx, cy) inside a box of half-side R (pixels). */
function tracePath(g: SKRSContext2D, shape: Shape, cx: number, cy: number, R: number): void {
  g.beginPath();
  const outline = OUTLINES[shape];
  if ("circle" in outline) {
    g.arc(cx, cy, R * outline.circle, 0, Math.PI * 2);
    return;
  }
  outline.polygon.forEach(([x, y], i) => (i === 0 ? g.moveTo(cx + R * x, cy + R * y) : g.lineTo(cx + R * x, cy + R * y)));
  g.closePath();
}

function drawObject(g: SKRSContext2D, o: SceneObject, size: number): void {
  const cx = o.x * size, cy = o.y * size, R = o.r * size;
  const base = COLOR_RGB[o.color];
  const line = Math.max(1, size / 64);
  g.save();
  g.lineJoin = "round"; // mitred joins would poke past the outline at sharp points
  tracePath(g, o.shape, cx, cy, R);
  switch (o.material) {
    case "rubber":
      g.fillStyle = css(tint(base, -0.1));
      g.fill();
      g.lineWidth = line;
      g.strokeStyle = css(tint(base, -0.55));
      g.stroke();
      break;
    case "metal": {
      const grad = g.createLinearGradient(cx - R, cy - R, cx + R, cy + R);
      grad.addColorStop(0, css(tint(base, 0.65)));
      grad.addColorStop(0.45, css(base));
      grad.addColorStop(1, css(tint(base, -0.5)));
      g.fillStyle = grad;
      g.fill();
      g.lineWidth = line;
      g.strokeStyle = css(tint(base, -0.6));
      g.stroke();
      g.clip();
      g.beginPath();
      g.arc(cx - R * 0.3, cy - R * 0.3, R * 0.2, 0, Math.PI * 2);
      g.fillStyle = "rgba(255,255,255,0.9)";
      g.fill();
      break;
    }
    case "wood": {
      g.fillStyle = css(base);
      g.fill();
      g.save();
      g.clip();
      g.strokeStyle = css(tint(base, -0.45));
      g.lineWidth = Math.max(1, R * 0.16);
      for (let y = cy - R + R * 0.25; y < cy + R; y += R * 0.45) {
        g.beginPath();
        g.moveTo(cx - R, y);
        g.quadraticCurveTo(cx, y + R * 0.15, cx + R, y);
        g.stroke();
      }
      g.restore();
      tracePath(g, o.shape, cx, cy, R);
      g.lineWidth = line;
      g.strokeStyle = css(tint(base, -0.6));
      g.stroke();
      break;
    }
    case "glass":
      g.fillStyle = css(base, 0.5);
      g.fill();
      g.lineWidth = 1.5 * line;
      g.strokeStyle = css(base);
      g.stroke();
      g.clip();
      g.beginPath();
      g.moveTo(cx - R * 0.55, cy - R * 0.1);
      g.lineTo(cx - R * 0.1, cy - R * 0.55);
      g.lineWidth = Math.max(1, R * 0.14);
      g.strokeStyle = "rgba(255,255,255,0.75)";
      g.stroke();
      break;
  }
  g.restore();
}

/** Draws `scene` on `target` (a new size×size canvas by default), background first. */
export function drawScene(scene: Scene, size: number, target: Canvas = createCanvas(size, size)): Canvas {
  const g = target.getContext("2d");
  g.fillStyle = BACKGROUND;
  g.fillRect(0, 0, size, size);
  for (const o of scene.objects) drawObject(g, o, size);
  return target;
}

// Canvases are reused across scenes: their pixels live in native memory that the garbage
// collector does not see, and a canvas per scene grew a 20,000-scene run to gigabytes.
const scratch = new Map<number, { scene: Canvas; variant: Canvas; piece: Canvas }>();
function canvases(size: number) {
  let c = scratch.get(size);
  if (!c) scratch.set(size, (c = { scene: createCanvas(size, size), variant: createCanvas(size, size), piece: createCanvas(size, size) }));
  return c;
}

/** The scene as PNG bytes. */
export function renderScene(scene: Scene, size: number): Buffer {
  return drawScene(scene, size, canvases(size).scene).encodeSync("png");
}

/**
 * The lower-right quadrant of `canvas` in its place on an otherwise MISSING (black) canvas of the
 * same size, as PNG bytes: the piece at the scale and position the vision encoder knows, the
 * complement of the masked image.
 */
function pieceInPlacePng(canvas: Canvas, size: number, piece: Canvas): Buffer {
  const h = size / 2;
  const g = piece.getContext("2d");
  g.fillStyle = MISSING;
  g.fillRect(0, 0, size, size);
  g.putImageData(canvas.getContext("2d").getImageData(h, h, h, h), h, h);
  return piece.encodeSync("png");
}

/**
 * The three images of a jigsaw item: the scene with its lower-right quadrant blacked out, and two
 * candidate pieces shown in place (the rest black): the true quadrant, and the same quadrant of
 * `variant` (the scene with the objects that reach into the corner changed), as PNG bytes. Also
 * returns the full scene PNG, drawn once. (BLINK shows the pieces as small crops; here they keep
 * the scene's scale, so the frozen encoder reads them as it reads scenes.)
 */
export function renderJigsaw(scene: Scene, variant: Scene, size: number): { full: Buffer; masked: Buffer; truePatch: Buffer; falsePatch: Buffer } {
  const c = canvases(size);
  const canvas = drawScene(scene, size, c.scene);
  const full = canvas.encodeSync("png");
  const truePatch = pieceInPlacePng(canvas, size, c.piece);
  const falsePatch = pieceInPlacePng(drawScene(variant, size, c.variant), size, c.piece);
  const g = canvas.getContext("2d");
  g.fillStyle = MISSING;
  g.fillRect(size / 2, size / 2, size / 2, size / 2);
  return { full, masked: canvas.encodeSync("png"), truePatch, falsePatch };
}
