// Diffusers Presets server: a browser that holds no workflow gets ComfyUI's default graph
// (CheckpointLoaderSimple, KSampler, ...), made of nodes this server does not have, and a
// "missing nodes" dialog. Load the pack's demo workflow in its place, before the frontend
// looks for missing nodes. Any other workflow is left alone.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const DEFAULT_GRAPH_TYPES = new Set([
  "CheckpointLoaderSimple", "CLIPTextEncode", "EmptyLatentImage", "KSampler", "VAEDecode", "SaveImage",
]);
const DEMO = "/workflow_templates/diffusers-presets/demo_sdxl.json";

function isUnrunnableDefaultGraph(graph) {
  const nodes = Array.isArray(graph?.nodes) ? graph.nodes : [];
  const types = new Set(nodes.map((node) => node?.type));
  const registered = window.LiteGraph?.registered_node_types ?? {};
  return types.has("CheckpointLoaderSimple") && types.has("KSampler")
    && [...types].every((type) => DEFAULT_GRAPH_TYPES.has(type))
    && [...types].some((type) => !(type in registered));
}

app.registerExtension({
  name: "DiffusersPresets.DemoForDefaultGraph",
  // 1.27 and 1.58 both await this with the graph about to load, before they collect missing
  // node types: replacing its contents in place swaps the workflow.
  async beforeConfigureGraph(graphData) {
    if (!isUnrunnableDefaultGraph(graphData)) return;
    try {
      const response = await api.fetchApi(DEMO);
      if (!response.ok) return;
      const demo = await response.json();
      for (const key of Object.keys(graphData)) delete graphData[key];
      Object.assign(graphData, demo);
    } catch (error) {
      console.warn("Diffusers Presets: the demo workflow could not be loaded", error);
    }
  },
});
