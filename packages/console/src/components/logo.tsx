// The shield mark, drawn inline (no image request, no font glyph that a system may lack).
export function Logo() {
  return (
    <svg class="logo" viewBox="0 0 16 16" width="18" height="18" aria-hidden="true" focusable="false">
      <path d="M8 1 2 3.5v4C2 11 4.6 14 8 15c3.4-1 6-4 6-7.5v-4L8 1Z" fill="none" stroke="currentColor" stroke-width="1.6" />
      <path d="M8 4v8M5 7h6" stroke="currentColor" stroke-width="1.4" />
    </svg>
  );
}
