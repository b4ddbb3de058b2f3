// align4d's 4D viewer: animated 3D Gaussians drawn with WebGL2, in the conventions of the project's
// renderers (align4d_core/scene/cameras.py, scene/render/projection.py): orbit cameras around the
// origin (y up, azimuth 0 on +z), OpenCV world-to-camera matrices, pinhole intrinsics with the
// principal point at the image centre, gsplat's EWA projection (Jacobian clamped to 1.3x the field
// of view, 0.3 px² low-pass, opacity-aware 3.33-sigma box), alpha = min(0.999, o·exp(-σ)) dropped
// under 1/255, back-to-front "over" on a white background. Blending happens in a half-float target
// when the browser offers one, so that hundreds of thin layers do not round at 8 bits each.
// The page holds its data inline (see viewer.py): canonical float32 positions and RGBA8 colours,
// then per frame float16 position offsets, rotations (wxyz) and log scales.
"use strict";
(function () {
  const meta = JSON.parse(document.getElementById("align4d-meta").textContent);
  const TEXW = 2048;

  // --- data -------------------------------------------------------------------------------------
  function decodeBase64(text) {
    const raw = atob(text.trim());
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes.buffer;
  }
  const HALF = (function () {
    const table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
      if (e === 0) table[h] = s * Math.pow(2, -14) * (f / 1024);
      else if (e === 31) table[h] = f ? NaN : s * Infinity;
      else table[h] = s * Math.pow(2, e - 15) * (1 + f / 1024);
    }
    return table;
  })();

  const buffer = decodeBase64(document.getElementById("align4d-data").textContent);
  const N = meta.count, T = meta.frames, L = meta.layout;
  const canonical = new Float32Array(buffer, L.means, N * 3);
  const colors = new Uint8Array(buffer, L.colors, N * 4);
  const dMeans = new Uint16Array(buffer, L.d_means, T * N * 3);
  const quats = new Uint16Array(buffer, L.quats, T * N * 4);
  const logScales = new Uint16Array(buffer, L.log_scales, T * N * 3);

  // --- cameras (scene/cameras.py) ---------------------------------------------------------------
  const view = { azimuth: 0, elevation: 0, distance: meta.distance, target: [0, 0, 0], frame: 0 };
  function camera(width, height) {
    const el = (view.elevation * Math.PI) / 180, az = (view.azimuth * Math.PI) / 180;
    const back = [Math.cos(el) * Math.sin(az), Math.sin(el), Math.cos(el) * Math.cos(az)];
    const right = [Math.cos(az), 0, -Math.sin(az)];
    const up = [
      back[1] * right[2] - back[2] * right[1],
      back[2] * right[0] - back[0] * right[2],
      back[0] * right[1] - back[1] * right[0],
    ];
    const eye = [0, 1, 2].map((i) => view.target[i] + back[i] * view.distance);
    const rows = [right, up.map((v) => -v), back.map((v) => -v)]; // OpenCV: x right, y down, z forward
    const trans = rows.map((r) => -(r[0] * eye[0] + r[1] * eye[1] + r[2] * eye[2]));
    const focal = (0.5 * height) / Math.tan((meta.fovy_deg * Math.PI) / 360);
    return { rows, trans, fx: focal, fy: focal, cx: width / 2, cy: height / 2, right, up };
  }

  // --- WebGL ------------------------------------------------------------------------------------
  const canvas = document.getElementById("align4d-canvas");
  const gl = canvas.getContext("webgl2", { antialias: false, preserveDrawingBuffer: true, alpha: false });
  if (!gl) {
    document.getElementById("align4d-status").textContent = "This page needs WebGL2, which this browser lacks.";
    return;
  }
  const halfFloatTarget = !!gl.getExtension("EXT_color_buffer_float");

  const SPLAT_VS = `#version 300 es
precision highp float; precision highp int; precision highp sampler2D;
uniform sampler2D uMeans, uQuats, uScales, uColors;
uniform mat3 uRot; uniform vec3 uTrans; uniform vec4 uIntr; uniform vec2 uSize; uniform uint uTexW;
in uint aIndex; in vec2 aCorner;
out vec4 vColor; out vec2 vOffset; out vec3 vConic;
void main() {
  ivec2 p = ivec2(int(aIndex % uTexW), int(aIndex / uTexW));
  vec3 mean = texelFetch(uMeans, p, 0).xyz;
  vec4 q = normalize(texelFetch(uQuats, p, 0));
  vec3 s = exp(texelFetch(uScales, p, 0).xyz);
  vec4 col = texelFetch(uColors, p, 0);
  vec3 t = uRot * mean + uTrans;
  gl_Position = vec4(0.0, 0.0, 2.0, 1.0);
  if (t.z < 0.01 || col.a < 1.0 / 255.0) return;
  float w = q.x, x = q.y, y = q.z, z = q.w;
  mat3 R = mat3(1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y + w * z), 2.0 * (x * z - w * y),
                2.0 * (x * y - w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z + w * x),
                2.0 * (x * z + w * y), 2.0 * (y * z - w * x), 1.0 - 2.0 * (x * x + y * y));
  mat3 M = R * mat3(s.x, 0.0, 0.0, 0.0, s.y, 0.0, 0.0, 0.0, s.z);
  mat3 cov = uRot * (M * transpose(M)) * transpose(uRot);
  float fx = uIntr.x, fy = uIntr.y, cx = uIntr.z, cy = uIntr.w;
  float tanx = 0.5 * uSize.x / fx, tany = 0.5 * uSize.y / fy;
  float limxp = (uSize.x - cx) / fx + 0.3 * tanx, limxn = cx / fx + 0.3 * tanx;
  float limyp = (uSize.y - cy) / fy + 0.3 * tany, limyn = cy / fy + 0.3 * tany;
  float txc = t.z * clamp(t.x / t.z, -limxn, limxp), tyc = t.z * clamp(t.y / t.z, -limyn, limyp);
  vec3 j0 = vec3(fx / t.z, 0.0, -fx * txc / (t.z * t.z));
  vec3 j1 = vec3(0.0, fy / t.z, -fy * tyc / (t.z * t.z));
  float a = dot(j0, cov * j0) + 0.3, b = dot(j0, cov * j1), c = dot(j1, cov * j1) + 0.3;
  float det = max(a * c - b * b, 1e-10);
  float extend = min(3.33, sqrt(2.0 * log(col.a * 255.0)));
  vec2 radius = ceil(extend * sqrt(vec2(a, c)));
  vec2 centre = vec2(fx * t.x / t.z + cx, fy * t.y / t.z + cy);
  vOffset = aCorner * radius;
  vec2 pixel = centre + vOffset;
  gl_Position = vec4(2.0 * pixel.x / uSize.x - 1.0, 1.0 - 2.0 * pixel.y / uSize.y, 0.0, 1.0);
  vConic = vec3(c / det, -b / det, a / det);
  vColor = col;
}`;
  const SPLAT_FS = `#version 300 es
precision highp float;
in vec4 vColor; in vec2 vOffset; in vec3 vConic;
out vec4 outColor;
void main() {
  vec2 d = vOffset;
  float sigma = 0.5 * (vConic.x * d.x * d.x + vConic.z * d.y * d.y) + vConic.y * d.x * d.y;
  if (sigma < 0.0) discard;
  float alpha = min(0.999, vColor.a * exp(-sigma));
  if (alpha < 1.0 / 255.0) discard;
  outColor = vec4(vColor.rgb * alpha, alpha);
}`;
  const PRESENT_VS = `#version 300 es
void main() { vec2 p = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2)); gl_Position = vec4(p * 2.0 - 1.0, 0.0, 1.0); }`;
  const PRESENT_FS = `#version 300 es
precision highp float; precision highp sampler2D;
uniform sampler2D uImage; out vec4 outColor;
void main() { outColor = vec4(clamp(texelFetch(uImage, ivec2(gl_FragCoord.xy), 0).rgb, 0.0, 1.0), 1.0); }`;

  function program(vs, fs) {
    const prog = gl.createProgram();
    for (const [type, source] of [[gl.VERTEX_SHADER, vs], [gl.FRAGMENT_SHADER, fs]]) {
      const shader = gl.createShader(type);
      gl.shaderSource(shader, source);
      gl.compileShader(shader);
      if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(shader));
      gl.attachShader(prog, shader);
    }
    gl.linkProgram(prog);
    if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(prog));
    return prog;
  }
  const splat = program(SPLAT_VS, SPLAT_FS);
  const present = program(PRESENT_VS, PRESENT_FS);
  const uniform = (prog, name) => gl.getUniformLocation(prog, name);

  const rowsTex = Math.ceil(N / TEXW);
  function texture(internal, format, type, data) {
    const tex = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, tex);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
    gl.texImage2D(gl.TEXTURE_2D, 0, internal, TEXW, rowsTex, 0, format, type, data);
    return tex;
  }
  const padded = () => new Float32Array(TEXW * rowsTex * 4); // one RGBA texel per Gaussian
  const frameMeans = padded(), frameQuats = padded(), frameScales = padded();
  const colorBytes = new Uint8Array(TEXW * rowsTex * 4);
  colorBytes.set(colors);
  const tex = {
    means: texture(gl.RGBA32F, gl.RGBA, gl.FLOAT, frameMeans),
    quats: texture(gl.RGBA32F, gl.RGBA, gl.FLOAT, frameQuats),
    scales: texture(gl.RGBA32F, gl.RGBA, gl.FLOAT, frameScales),
    colors: texture(gl.RGBA8, gl.RGBA, gl.UNSIGNED_BYTE, colorBytes),
  };

  const vao = gl.createVertexArray();
  gl.bindVertexArray(vao);
  const cornerBuffer = gl.createBuffer();
  gl.bindBuffer(gl.ARRAY_BUFFER, cornerBuffer);
  gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 1, -1, -1, 1, 1, 1]), gl.STATIC_DRAW);
  const aCorner = gl.getAttribLocation(splat, "aCorner");
  gl.enableVertexAttribArray(aCorner);
  gl.vertexAttribPointer(aCorner, 2, gl.FLOAT, false, 0, 0);
  const indexBuffer = gl.createBuffer();
  gl.bindBuffer(gl.ARRAY_BUFFER, indexBuffer);
  gl.bufferData(gl.ARRAY_BUFFER, N * 4, gl.DYNAMIC_DRAW);
  const aIndex = gl.getAttribLocation(splat, "aIndex");
  gl.enableVertexAttribArray(aIndex);
  gl.vertexAttribIPointer(aIndex, 1, gl.UNSIGNED_INT, 0, 0);
  gl.vertexAttribDivisor(aIndex, 1);
  gl.bindVertexArray(null);

  // --- one frame's Gaussians, and their order -----------------------------------------------------
  let loadedFrame = -1;
  function loadFrame(t) {
    if (t === loadedFrame) return;
    const m3 = t * N * 3, q4 = t * N * 4;
    for (let i = 0; i < N; i++) {
      for (let k = 0; k < 3; k++) {
        frameMeans[4 * i + k] = canonical[3 * i + k] + HALF[dMeans[m3 + 3 * i + k]];
        frameScales[4 * i + k] = HALF[logScales[m3 + 3 * i + k]];
      }
      for (let k = 0; k < 4; k++) frameQuats[4 * i + k] = HALF[quats[q4 + 4 * i + k]];
    }
    for (const [name, data] of [["means", frameMeans], ["quats", frameQuats], ["scales", frameScales]]) {
      gl.bindTexture(gl.TEXTURE_2D, tex[name]);
      gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, 0, TEXW, rowsTex, gl.RGBA, gl.FLOAT, data);
    }
    loadedFrame = t;
  }

  const depth = new Float32Array(N), depthKeys = new Uint32Array(N), order = new Uint32Array(N);
  const counts = new Uint32Array(65537); // reused by every draw: playing allocates nothing per frame
  function sortBackToFront(cam) {
    // camera-space depth of every centre, then a counting sort on 16-bit keys, farthest first
    const r = cam.rows[2], tz = cam.trans[2];
    let lo = Infinity, hi = -Infinity;
    for (let i = 0; i < N; i++) {
      const z = r[0] * frameMeans[4 * i] + r[1] * frameMeans[4 * i + 1] + r[2] * frameMeans[4 * i + 2] + tz;
      depth[i] = z;
      if (z < lo) lo = z;
      if (z > hi) hi = z;
    }
    const scale = hi > lo ? 65535 / (hi - lo) : 0;
    counts.fill(0);
    for (let i = 0; i < N; i++) {
      depthKeys[i] = 65535 - Math.floor((depth[i] - lo) * scale);
      counts[depthKeys[i] + 1]++;
    }
    for (let k = 1; k < counts.length; k++) counts[k] += counts[k - 1];
    for (let i = 0; i < N; i++) order[counts[depthKeys[i]]++] = i;
    gl.bindBuffer(gl.ARRAY_BUFFER, indexBuffer);
    gl.bufferSubData(gl.ARRAY_BUFFER, 0, order);
  }

  // --- drawing ----------------------------------------------------------------------------------
  let target = null;
  function offscreen(width, height) {
    if (!halfFloatTarget) return null;
    if (target && target.width === width && target.height === height) return target;
    const image = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, image);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
    gl.texStorage2D(gl.TEXTURE_2D, 1, gl.RGBA16F, width, height);
    const fbo = gl.createFramebuffer();
    gl.bindFramebuffer(gl.FRAMEBUFFER, fbo);
    gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, image, 0);
    target = { fbo, image, width, height };
    return target;
  }

  function draw() {
    const width = canvas.width, height = canvas.height;
    loadFrame(view.frame);
    const cam = camera(width, height);
    sortBackToFront(cam);
    const into = offscreen(width, height);
    gl.bindFramebuffer(gl.FRAMEBUFFER, into ? into.fbo : null);
    gl.viewport(0, 0, width, height);
    gl.clearColor(1, 1, 1, 1);
    gl.clear(gl.COLOR_BUFFER_BIT);
    gl.enable(gl.BLEND);
    gl.blendFuncSeparate(gl.ONE, gl.ONE_MINUS_SRC_ALPHA, gl.ONE, gl.ONE_MINUS_SRC_ALPHA);
    gl.useProgram(splat);
    const textures = [["uMeans", tex.means], ["uQuats", tex.quats], ["uScales", tex.scales], ["uColors", tex.colors]];
    textures.forEach(([name, t], unit) => {
      gl.activeTexture(gl.TEXTURE0 + unit);
      gl.bindTexture(gl.TEXTURE_2D, t);
      gl.uniform1i(uniform(splat, name), unit);
    });
    const rot = [0, 1, 2].flatMap((col) => cam.rows.map((row) => row[col])); // column-major
    gl.uniformMatrix3fv(uniform(splat, "uRot"), false, rot);
    gl.uniform3fv(uniform(splat, "uTrans"), cam.trans);
    gl.uniform4f(uniform(splat, "uIntr"), cam.fx, cam.fy, cam.cx, cam.cy);
    gl.uniform2f(uniform(splat, "uSize"), width, height);
    gl.uniform1ui(uniform(splat, "uTexW"), TEXW);
    gl.bindVertexArray(vao);
    gl.drawArraysInstanced(gl.TRIANGLE_STRIP, 0, 4, N);
    gl.bindVertexArray(null);
    gl.disable(gl.BLEND);
    if (into) {
      gl.bindFramebuffer(gl.FRAMEBUFFER, null);
      gl.useProgram(present);
      gl.activeTexture(gl.TEXTURE0);
      gl.bindTexture(gl.TEXTURE_2D, into.image);
      gl.uniform1i(uniform(present, "uImage"), 0);
      gl.drawArrays(gl.TRIANGLES, 0, 3);
    }
    showState();
  }

  // --- the page around it -------------------------------------------------------------------------
  const slider = document.getElementById("align4d-time");
  const playButton = document.getElementById("align4d-play");
  const frameLabel = document.getElementById("align4d-frame");
  const inputImage = document.getElementById("align4d-input");
  const cameraLabel = document.getElementById("align4d-camera");
  slider.max = String(T - 1);

  function showState() {
    slider.value = String(view.frame);
    frameLabel.textContent = `frame ${view.frame + 1} / ${T}`;
    if (inputImage && meta.input_frames.length) {
      inputImage.src = meta.input_frames[Math.min(view.frame, meta.input_frames.length - 1)];
    }
    cameraLabel.textContent =
      `azimuth ${view.azimuth.toFixed(1)}°, elevation ${view.elevation.toFixed(1)}°, ` +
      `distance ${view.distance.toFixed(3)}`;
  }

  let pending = false;
  function requestDraw() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      draw();
    });
  }

  let playing = false, lastTick = 0;
  function tick(now) {
    if (!playing) return;
    if (now - lastTick >= 1000 / meta.fps) {
      view.frame = (view.frame + 1) % T;
      lastTick = now;
      draw();
    }
    requestAnimationFrame(tick);
  }
  function setPlaying(on) {
    playing = on && T > 1;
    playButton.textContent = playing ? "pause" : "play";
    if (playing) requestAnimationFrame(tick);
  }
  playButton.addEventListener("click", () => setPlaying(!playing));
  slider.addEventListener("input", () => {
    setPlaying(false);
    view.frame = Number(slider.value);
    requestDraw();
  });

  function setCamera(c) {
    if (c.azimuth !== undefined) view.azimuth = c.azimuth;
    if (c.elevation !== undefined) view.elevation = Math.max(-89, Math.min(89, c.elevation));
    if (c.distance !== undefined) view.distance = Math.max(1e-3, c.distance);
    if (c.target !== undefined) view.target = c.target.slice();
  }
  document.querySelectorAll("[data-azimuth]").forEach((button) =>
    button.addEventListener("click", () => {
      setCamera({ azimuth: Number(button.dataset.azimuth), elevation: 0, distance: meta.distance, target: [0, 0, 0] });
      requestDraw();
    })
  );

  let drag = null;
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  canvas.addEventListener("pointerdown", (e) => {
    drag = { x: e.clientX, y: e.clientY, pan: e.button === 2 || e.shiftKey };
    canvas.setPointerCapture(e.pointerId);
  });
  canvas.addEventListener("pointerup", () => (drag = null));
  canvas.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    drag.x = e.clientX;
    drag.y = e.clientY;
    if (drag.pan) {
      const cam = camera(canvas.width, canvas.height);
      const perPixel = view.distance / cam.fy;
      view.target = view.target.map((v, i) => v - (cam.right[i] * dx - cam.up[i] * dy) * perPixel);
    } else {
      setCamera({ azimuth: view.azimuth - dx * 0.4, elevation: view.elevation + dy * 0.4 });
    }
    requestDraw();
  });
  canvas.addEventListener(
    "wheel",
    (e) => {
      e.preventDefault();
      setCamera({ distance: view.distance * Math.exp(e.deltaY * 0.001) });
      requestDraw();
    },
    { passive: false }
  );
  document.addEventListener("keydown", (e) => {
    if (e.code === "Space" && e.target === document.body) {
      e.preventDefault();
      setPlaying(!playing);
    }
  });

  // what tests and scripts drive: set a camera and a frame, draw now, read the picture
  window.align4dViewer = {
    meta,
    halfFloatTarget,
    setSize(width, height) {
      canvas.width = width;
      canvas.height = height;
      canvas.style.width = `${width}px`;
      canvas.style.height = `${height}px`;
    },
    setCamera,
    setFrame(t) {
      view.frame = Math.max(0, Math.min(T - 1, t | 0));
    },
    setPlaying,
    draw,
    capture() {
      draw();
      return canvas.toDataURL("image/png");
    },
    view,
  };
  draw();
  document.getElementById("align4d-status").textContent = meta.note;
})();
