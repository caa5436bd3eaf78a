//! Tunnel frames PILT, PILS, PILK, PILA and PILP.
