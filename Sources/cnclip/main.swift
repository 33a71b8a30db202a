print("cnclip")
