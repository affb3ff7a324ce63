// The world's known facts about each image (scenes.json), as the labels that structure analyses
// score against: every scene gets one value per attribute.
//
//   colour, shape  of the scene's first object in reading order (top row first, then left to
//                  right): the object the full-scene caption names first
//   count          the number of objects (1–6)
//   layout         the grid cell ("row,col" of the 3×3 grid) of that first object
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../config/errors.js";
import type { Scene } from "../world/scene.js";

export const ATTRIBUTES = ["colour", "shape", "count", "layout"] as const;
export type Attribute = (typeof ATTRIBUTES)[number];
export type SceneLabels = Record<Attribute, string>;

/** One scene's labels. */
export function sceneLabels(scene: Pick<Scene, "objects">): SceneLabels {
  const first = [...scene.objects].sort((a, b) => a.row - b.row || a.col - b.col)[0];
  if (first === undefined) throw new RangeError("a scene without objects has no attributes");
  return { colour: first.color, shape: first.shape, count: String(scene.objects.length), layout: `${first.row},${first.col}` };
}

/** Labels of every scene of a world, by COCO image id (the number in its file name, as a string). */
export function readSceneLabels(world: string): Map<string, SceneLabels> {
  const path = join(world, "scenes.json");
  if (!existsSync(path)) throw new ConfigError(`${path} not found: structure analyses need the world's scenes (a world directory from \`mindseye world generate\`)`);
  const { scenes } = JSON.parse(readFileSync(path, "utf8")) as { scenes: Scene[] };
  return new Map(scenes.map((s) => [String(Number(s.imageId)), sceneLabels(s)]));
}
