//! Registry frames (u32 length + JSON) and a typed message for every request and response.
