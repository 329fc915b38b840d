int dpn_placeholder() { return 1; }
